"""Every script under bench/ and scripts/ runs: a smoke run each, as a user would start it.

scripts/setup.sh, scripts/test.sh, scripts/test_env.sh and scripts/py310_venv.sh run on every
`make test` before pytest starts (CI runs exactly that); scripts/build_llama_server.sh and
scripts/build_engine_image.py have their own tests (test_build_fallback.py, the Docker tests).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import CACHE, require, require_llama_server

from zoe_panel.models import demo
from zoe_panel.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def _run(argv: list[str], env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **env}, timeout=timeout)


def test_gpu_run_script_smoke_on_the_cpu(tmp_path: Path, settings_with_model: Settings) -> None:
    """bench/gpu_run.sh's steps on this CPU machine: build (a cache hit), smoke model, benchmark."""
    require_llama_server(settings_with_model)
    tokenizer = CACHE / "models" / demo.SMOLLM2.filename
    done = _run(
        ["bench/gpu_run.sh"],
        {
            "ZOE_GPU_RUN_SMOKE": "1",
            "ZOE_GPU_SWEEP": "1",
            "ZOE_GPU_TOKENIZER": str(tokenizer),
            "OUT": str(tmp_path / "out"),
            "ZOE_BENCH_HOME": str(tmp_path / "home"),
            "ZOE_CACHE": str(CACHE),
            "PYTHON": str(ROOT / ".venv/bin/python"),
        },
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    report = (tmp_path / "out" / "gpu-bench.md").read_text()
    assert "1. GPU memory" in report and "3. Decode tokens/s vs the memory-bandwidth roofline" in report
    assert "Jetson Orin NX 16GB datasheet (for comparison) 102.4 GB/s" in report
    assert "4. Compute buffer and memory pools" in report and '"memory_kind": "cpu"' in report
    assert "compiling" not in done.stderr  # the checked CPU build was reused


def test_gpu_prepare_script_packs_what_the_gpu_run_imports(tmp_path: Path) -> None:
    done = _run(["bench/gpu_prepare.sh"], {"DEST": str(tmp_path), "ZOE_CACHE": str(CACHE)}, timeout=600)
    require(done.returncode == 0 or "No matching distribution" not in done.stderr, "PyPI not reachable")
    assert done.returncode == 0, done.stderr[-3000:]
    wheels = {p.name.split("-")[0].lower() for p in (tmp_path / ".whl").glob("*.whl")}
    assert {"docker", "requests", "urllib3", "httpx", "gguf", "psutil", "nvidia_ml_py"} <= wheels
    assert (tmp_path / ".device/llama.cpp/CMakeLists.txt").is_file()
    assert (tmp_path / ".device/llama.cpp/tools/rpc").is_dir()
    assert (tmp_path / ".device/smollm2-tokenizer.gguf").stat().st_size > 100_000


def test_bench_script_runs_one_benchmark(tmp_path: Path, settings_with_model: Settings) -> None:
    require_llama_server(settings_with_model)
    out = tmp_path / "bench.md"
    done = _run(["scripts/bench.sh", "--smoke", "--only", "4", "--out", str(out)], {"ZOE_CACHE": str(CACHE)})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "### 4." in out.read_text()
