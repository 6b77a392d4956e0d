"""The benchmarks keep working: a smoke run (few iterations) of every one, each its own test so
the slow ones show in the durations. No numbers are judged here; BENCHMARKS.md holds a full run
(make bench)."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def _benches() -> list[int]:
    import importlib.util

    spec = importlib.util.spec_from_file_location("zoe_bench_run", ROOT / "bench/run.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return sorted(module.BENCHES)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("n", _benches())
def test_a_benchmark_runs_and_prints_its_table(tmp_path: Path, n: int) -> None:
    out = tmp_path / "bench.md"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench/run.py"), "--smoke", "--only", str(n), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=540,
    )
    text = out.read_text()
    assert done.returncode == 0, text[-3000:] + done.stderr[-2000:]
    assert f"### {n}." in text and f"### {n}. b" not in text, text[-3000:]  # a title, not a FAILED marker
    assert "Machine:" in text and "baseline" in text
