"""Memory after READY on the real engine: the prompt cache cap holds under load, and the alarm is
raised (audit, status --json) and answered with a restart on a smaller cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import httpx
import psutil
import pytest
from conftest import engine_runtime, wait_for

from zoe_panel.models.demo import SMOLLM2
from zoe_panel.settings import Settings
from zoe_panel.telemetry.sampler import tree_rss

pytestmark = pytest.mark.integration
MIB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[2]
WORDS = ["lantern", "harbour", "copper", "meadow", "signal", "orbit", "ledger", "canvas", "thunder", "marble"]


def test_growth_after_ready_stays_within_the_allowance(settings_with_model: Settings) -> None:
    """12 distinct prompts on 4 slots with a 32 MiB prompt cache: the cache fills, and the engine's
    RSS above its READY level stays within what the estimate allowed after READY."""
    with engine_runtime(settings_with_model) as rt:
        spec = rt.default_spec(SMOLLM2.filename, ctx=4096, parallel=4, cache_ram_mib=32)
        est = rt.memory.estimate(spec)
        st = rt.engine.start(spec)
        rt.engine.wait(60)
        proc = psutil.Process(rt.engine.engine_pid())
        ready = tree_rss(proc)
        peak = ready
        headers = {"Authorization": f"Bearer {spec.api_key}"}

        def ask(i: int) -> int:
            text = " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(200)) + f" #{i}"
            body = {"messages": [{"role": "user", "content": text}], "max_tokens": 8}
            return httpx.post(f"{st.base_url}/v1/chat/completions", json=body, headers=headers, timeout=120).status_code

        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = [pool.submit(ask, i) for i in range(12)]
            while not all(f.done() for f in futures):
                peak = max(peak, tree_rss(proc))
                time.sleep(0.05)
            codes = [f.result() for f in futures]
        peak = max(peak, tree_rss(proc))
        assert codes == [200] * 12
        growth = peak - ready
        assert growth > 32 * MIB  # the cache (and the compute pages) did fill
        assert growth <= est.after_load_bytes * 1.05, (
            f"grew {growth / MIB:.1f} MiB, allowed {est.after_load_bytes / MIB:.1f} MiB"
        )


def test_memory_alarm_is_raised_reported_and_answered_with_a_smaller_cache(settings_with_model: Settings) -> None:
    total_mib = psutil.virtual_memory().total // MIB
    # a floor above all the machine's memory: available is below it as soon as the engine serves
    settings = replace(settings_with_model, memory_floor_mib=total_mib + 1024, cache_ram_mib=512)
    with engine_runtime(settings, sampler=True) as rt:
        st = rt.engine.start(rt.default_spec(SMOLLM2.filename, ctx=2048))
        assert st.spec is not None and st.spec.cache_ram_mib == 512
        rt.engine.wait(60)
        alarm = wait_for(lambda: rt.alarm.current, 20, 0.2)
        assert alarm.floor_bytes == (total_mib + 1024) * MIB and alarm.cache_ram_mib == 512
        assert alarm.suggested_cache_ram_mib is not None and alarm.suggested_cache_ram_mib < 512
        wait_for(
            lambda: any(a["action"] == "memory alarm" and a["outcome"] == "raised" for a in rt.history.audit_log(20))
        )
        # the CLI (another process) reports the same episode
        env = {**os.environ, "ZOE_HOME": str(settings.home), "ZOE_MEMORY_FLOOR_MIB": str(total_mib + 1024)}
        done = subprocess.run(
            [sys.executable, "-m", "zoe_panel", "status", "--json"], capture_output=True, text=True, env=env, cwd=ROOT
        )
        status = json.loads(done.stdout)
        assert status["memory_alarm"] is not None and status["memory_alarm"]["since"] == alarm.since
        assert "below the" in status["memory_alarm"]["message"]
        # the offer: the same engine again with the smaller cache
        new = rt.restart_smaller_cache(client="test")
        rt.engine.wait(60)
        cmdline = psutil.Process(rt.engine.engine_pid()).cmdline()
        assert new.spec is not None and new.spec.cache_ram_mib == alarm.suggested_cache_ram_mib
        assert cmdline[cmdline.index("--cache-ram") + 1] == str(alarm.suggested_cache_ram_mib)
        actions = [(a["action"], a["outcome"]) for a in rt.history.audit_log(30)]
        assert ("restart with a smaller cache", "ok") in actions
