"""The benchmarks keep working: a smoke run (few iterations) of every one. No numbers are judged
here; BENCHMARKS.md holds a full run (make bench)."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(1200)  # 18 benchmarks, one smoke pass each: about 5 minutes here
def test_every_benchmark_runs_and_prints_its_table(tmp_path: Path) -> None:
    out = tmp_path / "bench.md"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench/run.py"), "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    text = out.read_text()
    assert done.returncode == 0, text[-3000:] + done.stderr[-2000:]
    for n in (1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18):
        assert f"### {n}." in text and f"### {n}. b" not in text  # a title, not a FAILED marker
    assert "Machine:" in text and "baseline" in text
