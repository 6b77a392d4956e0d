"""Fault suite, engine side: SIGKILL mid-reply under on-failure, OOM at load, restore on boot."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator

import pytest
from conftest import engine_runtime, wait_for
from faultkit import report

from zoe_panel.chat import ChatParams
from zoe_panel.chat_session import ChatSession
from zoe_panel.engine.base import EngineState
from zoe_panel.errors import EngineError
from zoe_panel.runtime import Runtime

pytestmark = [pytest.mark.faults, pytest.mark.integration]
MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture
def healing(settings_with_model) -> Iterator[Runtime]:  # type: ignore[no-untyped-def]
    with engine_runtime(settings_with_model.replace(restart_policy="on-failure", restart_max=3), sampler=True) as rt:
        yield rt


def test_engine_sigkill_mid_reply_comes_back(healing: Runtime) -> None:
    rt = healing
    rt.engine.start(rt.default_spec(MODEL, ctx=2048))
    first = rt.engine.wait(60, on_poll=rt.recording())
    chat = ChatSession()
    chat.ask("Write a long story about a lighthouse keeper.")
    for i, _ in enumerate(chat.stream_text(rt.chat_client(), ChatParams(max_tokens=800, seed=1))):
        if i == 5:
            os.kill(first.pid or 0, signal.SIGKILL)
    turn = chat.turns[-1]
    killed_at = time.monotonic()
    failed = wait_for(lambda: (s := rt.engine.status(max_age_s=0)).state == EngineState.FAILED and s, 5, 0.02)
    back = wait_for(lambda: (s := rt.engine.status(max_age_s=0)).state == EngineState.READY and s, 10)
    took = time.monotonic() - killed_at
    run = wait_for(lambda: (r := rt.history.run(first.run_id or "")) and r.restarts == 1 and r, 10)
    ok = (
        turn.content != ""
        and turn.error is not None
        and failed.exit_code == 137
        and back.pid != first.pid
        and back.restarts == 1
        and run.outcome in ("ready", "running")
    )
    report(
        "engine SIGKILL during a streamed reply (on-failure)",
        "partial reply kept with an error; FAILED; READY again within 10 s; restart in History",
        f"{len(turn.content)} chars kept, error '{(turn.error or '')[:40]}…'; FAILED (exit {failed.exit_code}); "
        f"READY again after {took:.1f} s (pid {first.pid}→{back.pid}); History restarts={run.restarts}",
        ok,
    )
    assert ok


def test_oom_at_load_is_diagnosed_without_a_restart_loop(healing: Runtime) -> None:
    rt = healing
    rt.engine.start(rt.default_spec(MODEL, ctx=4_194_304))
    with pytest.raises(EngineError) as e:
        rt.engine.wait(60, on_poll=rt.recording())
    time.sleep(2.0)  # room for a (wrong) restart to happen
    st = rt.engine.status(max_age_s=0)
    ok = st.state == EngineState.FAILED and st.restarts == 0 and "Out of memory" in str(e.value)
    report(
        "OOM during load (a 4M-token context, 90 GiB of KV)",
        "FAILED with the OOM diagnosis, no restart loop",
        f"{st.state.value}, restarts={st.restarts}; '{str(e.value).splitlines()[1][:70]}'",
        ok,
    )
    assert ok


def test_restore_on_boot_brings_the_engine_back(healing: Runtime) -> None:
    rt = healing
    rt.engine.start(rt.default_spec(MODEL, ctx=1536))
    first = rt.engine.wait(60, on_poll=rt.recording())
    # a machine reboot: the engine and its supervisor vanish without a Stop
    sup = json.loads(rt.engine.backends["process"].meta_file.read_text())["supervisor_pid"]
    os.killpg(os.getpgid(sup), signal.SIGKILL)
    wait_for(lambda: rt.engine.status(max_age_s=0).state == EngineState.FAILED, 10)
    panel = Runtime(rt.settings, sampler=True)  # the panel starts after the reboot
    panel.start_background()
    try:
        back = panel.engine.wait(60, on_poll=panel.recording())
        ok = back.spec == first.spec and back.pid != first.pid and back.run_id != first.run_id
        report(
            "machine reboot while the engine runs (restore_on_boot on)",
            "the panel starts the same engine again",
            f"READY with ctx {back.spec.ctx if back.spec else '?'} "
            f"(same spec: {back.spec == first.spec}); audit '{panel.history.audit_log(1)[0]['action']}'",
            ok,
        )
        assert ok and panel.history.audit_log(1)[0]["action"] == "restore"
    finally:
        panel.close()
