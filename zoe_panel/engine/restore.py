"""Restore on boot: remember what should run (written on Start, removed on Stop) and bring it back
when the panel comes up and finds it gone (panel restart, machine reboot)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from zoe_panel.engine.base import EngineSpec, EngineStatus
from zoe_panel.errors import ZoePanelError
from zoe_panel.jsonfile import StateFileError, read_state, write_json_atomic

if TYPE_CHECKING:
    from zoe_panel.engine.service import EngineService


class DesiredEngine:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "engine" / "desired.json"

    def remember(self, event: str, status: EngineStatus) -> None:
        if event == "start" and status.spec is not None:
            # the spec carries the engine's API key
            write_json_atomic(self.path, {"spec": status.spec.to_json(), "backend": status.backend}, secret=True)
        elif event == "stop":
            self.path.unlink(missing_ok=True)

    def restore(self, engine: EngineService) -> EngineStatus | None:
        """Start the remembered engine if none runs now; None when there was nothing to do."""
        try:
            desired = read_state(self.path, dict)
        except StateFileError as e:
            engine.audit("restore", "failed", client="panel", detail=str(e)[:300])
            return None
        if desired is None:
            return None
        if engine.status(max_age_s=0).state.is_running:
            return None  # still running: re-attached, nothing to restore
        try:
            spec = EngineSpec.from_json(desired["spec"])
            status = engine.start(spec, backend=desired.get("backend", "process"), client="restore")
        except (ZoePanelError, KeyError, TypeError) as e:
            engine.audit("restore", "failed", client="panel", detail=str(e)[:300])
            return None
        engine.audit("restore", "ok", client="panel", target=spec.model_name)
        return status
