"""derive_status: the engine's state from the state files, /proc and the probe."""

from zoe_panel.engine.base import EngineSpec, EngineState
from zoe_panel.engine.exits import describe_exit, exit_code_of
from zoe_panel.engine.health import Probe
from zoe_panel.engine.process import derive_status

META = {"run_id": "r1", "spec": EngineSpec(model="/m/a.gguf").to_json(), "started_at": 1.0}


def sup(**kw):  # type: ignore[no-untyped-def]
    base = {"run_id": "r1", "phase": "running", "child_pid": 42, "loaded": False, "restarts": 0}
    base.update(kw)
    return base


def test_nothing_started_is_stopped() -> None:
    assert (
        derive_status(None, None, supervisor_alive=False, child_alive=False, probe_result=None).state
        == EngineState.STOPPED
    )


def test_loading_is_starting_then_ready() -> None:
    st = derive_status(
        META, sup(), supervisor_alive=True, child_alive=True, probe_result=Probe(False, True, "loading model")
    )
    assert st.state == EngineState.STARTING and st.reason == "loading model"
    st = derive_status(META, sup(loaded=True), supervisor_alive=True, child_alive=True, probe_result=Probe(True, True))
    assert st.state == EngineState.READY and st.pid == 42 and st.base_url == "http://127.0.0.1:8088"


def test_loaded_but_probe_failing_is_unhealthy() -> None:
    st = derive_status(
        META, sup(loaded=True), supervisor_alive=True, child_alive=True, probe_result=Probe(False, False, "timeout")
    )
    assert st.state == EngineState.UNHEALTHY and "timeout" in st.reason


def test_exit_during_load_is_failed_with_code_and_reason() -> None:
    s = sup(phase="exited", exit_code=1, reason="")
    st = derive_status(META, s, supervisor_alive=False, child_alive=False, probe_result=None, log_tail=("x",))
    assert st.state == EngineState.FAILED and st.exit_code == 1 and "exit code 1" in st.reason


def test_backoff_shows_failed_and_restarting() -> None:
    st = derive_status(
        META,
        sup(phase="backoff", exit_code=137, restarts=1),
        supervisor_alive=True,
        child_alive=False,
        probe_result=None,
    )
    assert st.state == EngineState.FAILED and "restarting" in st.reason and "SIGKILL" in st.reason


def test_dead_supervisor_while_running_is_failed() -> None:
    st = derive_status(META, sup(), supervisor_alive=False, child_alive=False, probe_result=None)
    assert st.state == EngineState.FAILED and "supervisor died" in st.reason


def test_stopped_marker_wins() -> None:
    meta = dict(META, stopped_at=5.0)
    st = derive_status(
        meta, sup(phase="stopped", exit_code=0), supervisor_alive=False, child_alive=False, probe_result=None
    )
    assert st.state == EngineState.STOPPED


def test_state_of_another_run_is_ignored() -> None:
    st = derive_status(
        META,
        sup(run_id="old", phase="exited", exit_code=1),
        supervisor_alive=True,
        child_alive=False,
        probe_result=None,
    )
    assert st.state == EngineState.STARTING


def test_exit_codes_follow_shell_convention() -> None:
    assert exit_code_of(-9) == 137 and exit_code_of(1) == 1 and exit_code_of(None) is None
    assert "SIGKILL" in describe_exit(137) and "OOM" in describe_exit(137)
    assert describe_exit(134).endswith("SIGABRT")


def test_status_json_has_the_cli_fields() -> None:
    st = derive_status(META, sup(loaded=True), supervisor_alive=True, child_alive=True, probe_result=Probe(True, True))
    data = st.to_json()
    assert data["state"] == "ready" and data["model"] == "a.gguf" and data["backend"] == "process"
    assert data["flavor"] == "llama-server" and data["pid"] == 42 and data["base_url"]
