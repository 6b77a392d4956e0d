"""The Docker backend's state, as a pure function of the container's attributes.

``DockerEngine.status`` does the I/O (list containers by label, probe /health, read the last log
lines) and hands the plain values to :func:`status_from_attrs`; the mapping itself, every state
and reason, is unit-tested on attribute dicts shaped like ``docker inspect`` output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from zoe_panel.engine.base import EngineSpec, EngineState, EngineStatus
from zoe_panel.engine.exits import describe_exit
from zoe_panel.engine.health import Probe


@dataclass(frozen=True)
class ContainerView:
    """What status needs of one engine container (``container.attrs`` / ``docker inspect``)."""

    id: str
    status: str  # created | running | restarting | exited | dead | paused
    labels: dict[str, str] = field(default_factory=dict)
    exit_code: int | None = None
    oom_killed: bool = False
    pid: int | None = None
    restart_count: int = 0
    restart_policy: str = "no"
    created: str = ""

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any], fallback_status: str = "") -> ContainerView:
        st = attrs.get("State") or {}
        host = attrs.get("HostConfig") or {}
        return cls(
            id=str(attrs.get("Id", "")),
            status=str(st.get("Status") or fallback_status),
            labels=dict((attrs.get("Config") or {}).get("Labels") or {}),
            exit_code=st.get("ExitCode"),
            oom_killed=bool(st.get("OOMKilled")),
            pid=st.get("Pid") or None,
            restart_count=int(attrs.get("RestartCount") or 0),
            restart_policy=str((host.get("RestartPolicy") or {}).get("Name") or "no"),
            created=str(attrs.get("Created", "")),
        )

    @property
    def run_id(self) -> str | None:
        return self.labels.get("zoe-panel.run-id")


@dataclass(frozen=True)
class RestartRule:
    policy: str = "no"  # the panel's restart_policy setting
    restart_max: int = 3


def spec_of(c: ContainerView, state: dict[str, Any]) -> EngineSpec:
    """The spec this panel wrote for the container (with its key), else the public one on its label."""
    if state.get("run_id") == c.run_id and isinstance(state.get("spec"), dict):
        return EngineSpec.from_json(state["spec"])
    return EngineSpec.from_json(json.loads(c.labels.get("zoe-panel.spec", "{}") or "{}"))


def status_from_attrs(
    c: ContainerView,
    state: dict[str, Any],
    *,
    probe: Probe | None,
    loaded: bool,
    rule: RestartRule,
    log_tail: tuple[str, ...] = (),
) -> EngineStatus:
    """The engine's state from one container, the panel's record of it (docker.json), the health
    probe (running containers only) and whether the log shows the model loaded."""
    ours = state.get("run_id") == c.run_id
    common: dict[str, Any] = dict(
        backend="docker",
        spec=spec_of(c, state),
        run_id=c.run_id,
        container_id=c.id,
        started_at=state.get("started_at") if ours else None,
        restarts=c.restart_count,
        pid=c.pid,
    )
    if ours and state.get("stopped_at"):
        return EngineStatus(EngineState.STOPPED, exit_code=c.exit_code, **common)
    if c.status == "running":
        if probe is not None and probe.ready:
            return EngineStatus(EngineState.READY, **common)
        detail = probe.detail if probe is not None else ""
        if loaded:
            return EngineStatus(EngineState.UNHEALTHY, reason=f"health check failed: {detail}", **common)
        return EngineStatus(EngineState.STARTING, reason=detail, **common)
    if c.status == "created":
        return EngineStatus(EngineState.STARTING, reason="container created", **common)
    reason = describe_exit(c.exit_code)
    if c.oom_killed:
        reason += " (Docker reports the container was OOM-killed)"
    armed = c.restart_policy == "on-failure"
    restarting = c.status == "restarting"
    if restarting:
        reason += f"; restarting ({c.restart_count} so far)"
    elif rule.policy == "on-failure" and not armed and c.exit_code not in (0, None):
        reason += "; the engine failed while loading; not restarted, since the same settings would fail again"
    elif rule.policy == "on-failure" and c.restart_count >= rule.restart_max:
        reason += (
            f"; crash loop: Docker restarted it {c.restart_count} times (restart_max {rule.restart_max}) and gave up"
        )
    return EngineStatus(
        EngineState.FAILED,
        exit_code=c.exit_code,
        reason=reason,
        restarting=restarting,
        log_tail=log_tail,
        **{**common, "pid": None},
    )


def should_arm_restart(c: ContainerView, status: EngineStatus, rule: RestartRule) -> bool:
    """Docker's on-failure is armed once the engine has loaded (READY), never before: a failed load
    would only fail again."""
    return status.state == EngineState.READY and rule.policy == "on-failure" and c.restart_policy != "on-failure"
