"""vLLM asked for more KV space than the machine has, for real: on the CPU it checks only after
loading and compiling (about 2.5 minutes here), so this runs in the full fault suite (make faults),
not in every make test; the same message is tested from a recorded line in tests/unit/test_vllm.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import engine_runtime
from conftest import zoe_cli as cli
from faultkit import FULL

from zoe_panel.engine.base import EngineState
from zoe_panel.engine.flavors.vllm import hf_dir
from zoe_panel.errors import EngineError
from zoe_panel.models.demo import SMOLLM2
from zoe_panel.settings import load_settings

pytestmark = [pytest.mark.faults, pytest.mark.skipif(not FULL, reason="make faults: a vLLM start takes ~2.5 min")]
ROOT = Path(__file__).resolve().parents[2]


def test_a_kv_space_vllm_cannot_reserve_is_diagnosed(vllm_home: Path) -> None:
    """On the CPU, vLLM checks its KV space against free memory only after loading and compiling."""
    settings = load_settings({**os.environ, "ZOE_HOME": str(vllm_home)})
    folder = hf_dir(vllm_home / "models" / SMOLLM2.filename)
    if not (folder / "config.json").is_file():
        assert cli(vllm_home, "vllm", "--prepare", SMOLLM2.filename).returncode == 0
    with engine_runtime(settings) as rt:
        total = rt.memory.budget().host_total_bytes or 0
        too_much = int(total * 2 / 2**20)
        spec = rt.default_spec(SMOLLM2.filename, flavor="vllm", ctx=2048, kv_space_mib=too_much)
        rt.engine.start(spec)
        with pytest.raises(EngineError, match="could not reserve its KV cache space"):
            rt.engine.wait(600)
        st = rt.engine.status(max_age_s=0)
        assert st.state == EngineState.FAILED
        d = rt.engine.diagnose(st)
        assert d is not None and d.kind in ("vllm_kv_space", "oom"), (d, rt.engine.logs(30))
        assert any("KV" in f for f in d.fixes)
