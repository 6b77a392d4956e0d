"""Backends, by name: where an engine runs (a local process tree, a Docker container).

Like the telemetry sources, each is built lazily and says ``is_available()``; a backend whose
Python package or daemon is missing is unavailable, never an error in another backend's Start.
``auto`` picks Docker on a Jetson whose engine image is here, else the native process;
``ZOE_BACKEND`` (the backend setting) forces one.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from zoe_panel.errors import EngineError

if TYPE_CHECKING:
    from zoe_panel.engine.base import Backend
    from zoe_panel.settings import Settings

# name -> "module:class". Adding a backend: a module, and a line here.
_BUILTIN = {
    "process": "zoe_panel.engine.process:ProcessEngine",
    "docker": "zoe_panel.engine.docker:DockerEngine",
}


def names() -> tuple[str, ...]:
    return tuple(_BUILTIN)


def make_backends(settings: Settings) -> dict[str, Backend]:
    out: dict[str, Backend] = {}
    for name, target in _BUILTIN.items():
        module, _, attr = target.partition(":")
        out[name] = getattr(importlib.import_module(module), attr)(settings)
    return out


def choose(settings: Settings, backends: dict[str, Backend], requested: str | None = None) -> str:
    """The backend a Start uses: the requested one, else the setting; auto as described above."""
    choice = requested or settings.backend
    if choice != "auto":
        if choice not in backends:
            raise EngineError(f"backend {choice!r} is not one of {', '.join(backends)}")
        return choice
    from zoe_panel.engine.docker import DockerEngine

    docker = backends.get("docker")
    if not isinstance(docker, DockerEngine) or not settings.tegra_release.exists():
        return "process"
    ok, _ = docker.is_available()
    return "docker" if ok and docker.has_engine_image() else "process"
