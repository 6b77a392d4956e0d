"""An engine binary that traps is explained, and a backend that cannot run never blocks another."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import engine_runtime, wait_for

from zoe_panel.engine.base import EngineState
from zoe_panel.settings import Settings, load_settings

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_an_engine_killed_by_sigill_is_diagnosed_with_the_safe_rebuild(
    settings_with_model: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    standin = tmp_path / "llama-server"
    standin.write_text("#!/bin/sh\necho 'main: loading model'\nkill -ILL $$\n")
    standin.chmod(0o755)
    monkeypatch.setenv("ZOE_LLAMA_SERVER", str(standin))
    settings = load_settings()
    with engine_runtime(settings, engine=False) as rt:
        rt.engine.start(rt.default_spec("SmolLM2-135M-Instruct.Q4_1.gguf"), backend="process")
        st = wait_for(lambda: (s := rt.engine.status(max_age_s=0)).state == EngineState.FAILED and s, 30)
        assert st.exit_code == 132 and "SIGILL" in st.reason
        d = rt.engine.diagnose(st)
        assert d is not None and d.kind == "sigill"
        assert any("ZOE_BUILD_VARIANT=portable make llama-server" in f for f in d.fixes)
        done = subprocess.run(
            [sys.executable, "-m", "zoe_panel", "status", "--json"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        data = json.loads(done.stdout)
        assert data["state"] == "failed" and "cannot run" in data["diagnosis"]


def test_without_the_docker_package_the_process_backend_still_starts(settings_with_model: Settings) -> None:
    """bench/gpu_run.sh died with ModuleNotFoundError: docker when the controller asked every backend
    for its status at Start. Run a real start in a child where `import docker` fails."""
    code = (
        "import sys; sys.modules['docker'] = None\n"
        "from zoe_panel.runtime import Runtime\n"
        "from zoe_panel.settings import load_settings\n"
        "rt = Runtime(load_settings(), sampler=False)\n"
        "ok, why = rt.engine.docker.is_available()\n"
        "assert not ok and 'docker Python package is not installed' in why, why\n"
        "rt.engine.start(rt.default_spec('SmolLM2-135M-Instruct.Q4_1.gguf', ctx=512), backend='process')\n"
        "st = rt.engine.wait(120, on_poll=rt.recording())\n"
        "print(st.state.value, rt.engine.status().backend)\n"
        "rt.engine.stop()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env={**os.environ}, timeout=180
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["READY", "process"]
