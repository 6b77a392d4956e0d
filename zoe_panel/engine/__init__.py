"""The engine: one front door, :class:`EngineService` (start, stop, status, wait, diagnose), on a
registry of backends (process, docker; backends.py) and of flavours (llama-server,
llama-cpp-python, ...; flavors/). Pages and the CLI use the service and the spec/state values
only.

Exports are resolved lazily (PEP 562): the engine's supervisor process imports small modules of
this package and must not pay for the service's imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zoe_panel.engine.base import EngineSpec, EngineState, EngineStatus
    from zoe_panel.engine.service import EngineService

__all__ = ["EngineService", "EngineSpec", "EngineState", "EngineStatus"]


def __getattr__(name: str) -> Any:
    if name == "EngineService":
        from zoe_panel.engine.service import EngineService

        return EngineService
    if name in ("EngineSpec", "EngineState", "EngineStatus"):
        from zoe_panel.engine import base

        return getattr(base, name)
    raise AttributeError(name)
