"""The Docker backend's state from container attributes: a pure function, case by case."""

from __future__ import annotations

import json
from typing import Any

from zoe_panel.engine.base import EngineSpec, EngineState
from zoe_panel.engine.docker_status import ContainerView, RestartRule, should_arm_restart, status_from_attrs
from zoe_panel.engine.health import Probe

SPEC = EngineSpec(model="/models/m.gguf", api_key="k-secret")
READY = Probe(True, True, "ok")
LOADING = Probe(False, True, "loading model")
NO_RULE = RestartRule()
ON_FAILURE = RestartRule("on-failure", 3)


def attrs(status: str, *, code: int = 0, oom: bool = False, restarts: int = 0, policy: str = "no") -> dict[str, Any]:
    """What docker inspect says of an engine container the panel started."""
    return {
        "Id": "c0ffee",
        "Created": "2026-12-01T10:00:00.000000000Z",
        "State": {"Status": status, "ExitCode": code, "OOMKilled": oom, "Pid": 4242 if status == "running" else 0},
        "RestartCount": restarts,
        "HostConfig": {"RestartPolicy": {"Name": policy}},
        "Config": {"Labels": {"zoe-panel.run-id": "r1", "zoe-panel.spec": json.dumps(SPEC.public_json())}},
    }


STATE = {"run_id": "r1", "spec": SPEC.to_json(), "started_at": 100.0}


def status(
    a: dict[str, Any],
    *,
    probe: Probe | None = None,
    loaded: bool = False,
    rule: RestartRule = NO_RULE,
    state: dict[str, Any] = STATE,
):  # type: ignore[no-untyped-def]
    return status_from_attrs(ContainerView.from_attrs(a), state, probe=probe, loaded=loaded, rule=rule)


def test_running_and_healthy_is_ready_with_its_pid_and_own_spec() -> None:
    st = status(attrs("running"), probe=READY)
    assert st.state == EngineState.READY and st.pid == 4242 and st.container_id == "c0ffee"
    assert st.spec is not None and st.spec.api_key == "k-secret" and st.started_at == 100.0


def test_another_panels_container_shows_its_public_spec_without_the_key() -> None:
    st = status(attrs("running"), probe=READY, state={})
    assert st.spec is not None and st.spec.api_key == "***" and st.started_at is None


def test_running_but_not_answering() -> None:
    assert status(attrs("running"), probe=LOADING).state == EngineState.STARTING
    unhealthy = status(attrs("running"), probe=Probe(False, False, "/health: ConnectError"), loaded=True)
    assert unhealthy.state == EngineState.UNHEALTHY and "ConnectError" in unhealthy.reason
    assert status(attrs("created")).state == EngineState.STARTING


def test_an_oom_killed_container_says_so() -> None:
    st = status(attrs("exited", code=137, oom=True))
    assert st.state == EngineState.FAILED and st.exit_code == 137 and st.pid is None
    assert "SIGKILL" in st.reason and "OOM-killed" in st.reason and not st.restarting


def test_a_failed_load_under_on_failure_is_not_retried_and_says_why() -> None:
    st = status(attrs("exited", code=1), rule=ON_FAILURE)
    assert "failed while loading; not restarted" in st.reason


def test_restarting_is_a_field_not_a_phrase() -> None:
    st = status(attrs("restarting", code=139, restarts=2, policy="on-failure"), rule=ON_FAILURE)
    assert st.state == EngineState.FAILED and st.restarting and st.restarts == 2


def test_a_crash_loop_is_named() -> None:
    st = status(attrs("exited", code=139, restarts=3, policy="on-failure"), rule=ON_FAILURE)
    assert "crash loop" in st.reason and not st.restarting


def test_a_stop_the_panel_recorded_wins() -> None:
    st = status(attrs("exited", code=0), state={**STATE, "stopped_at": 200.0})
    assert st.state == EngineState.STOPPED


def test_restart_policy_is_armed_only_once_loaded() -> None:
    view = ContainerView.from_attrs(attrs("running"))
    ready = status(attrs("running"), probe=READY, rule=ON_FAILURE)
    loading = status(attrs("running"), probe=LOADING, rule=ON_FAILURE)
    assert should_arm_restart(view, ready, ON_FAILURE)
    assert not should_arm_restart(view, loading, ON_FAILURE)
    assert not should_arm_restart(view, ready, NO_RULE)
    armed = ContainerView.from_attrs(attrs("running", policy="on-failure"))
    assert not should_arm_restart(armed, ready, ON_FAILURE)
