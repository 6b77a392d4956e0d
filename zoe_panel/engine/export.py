"""The current configuration as something an operator pastes elsewhere: the native command line,
``docker run``, and a docker-compose service block. Pure functions but ``exports``; the API key is left as a
variable reference so it never lands in a shell history or a compose file in clear."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from zoe_panel.engine import defaults, flavors
from zoe_panel.engine.argv import Capabilities
from zoe_panel.engine.base import EngineSpec

if TYPE_CHECKING:
    from zoe_panel.settings import Settings

MODELS_MOUNT = "/models"


@dataclass(frozen=True)
class ContainerTarget:
    """Where an exported engine container runs: image, models folder and GPU wiring."""

    image: str
    models_root: Path
    binary: str = defaults.IMAGE_BINARY
    gpu: str = "runtime"  # runtime | device-requests | none, as DockerEngine.gpu_mode()
    runtime: str = "nvidia"
    caps: Capabilities | None = None
    jtop_socket: bool = False

    def argv(self, spec: EngineSpec) -> list[str]:
        """The engine's command inside the container: the model under /models, the image's binary."""
        rel = Path(spec.model).resolve().relative_to(self.models_root.resolve()).as_posix()
        inner = replace(spec, model=f"{MODELS_MOUNT}/{rel}")
        return flavors.get(spec.flavor).container_argv(inner, self.binary, self.caps or Capabilities())

    @property
    def models_volume(self) -> str:
        return f"{self.models_root.resolve()}:{MODELS_MOUNT}:ro"


def docker_run_command(spec: EngineSpec, target: ContainerTarget) -> str:
    parts = [
        "docker",
        "run",
        "-d",
        "--name",
        "zoe-engine",
        "--network",
        "host",
        "--shm-size",
        "8g",
        "-v",
        target.models_volume,
        "--restart",
        "unless-stopped",
    ]
    if target.gpu == "runtime":
        parts += ["--runtime", target.runtime]
    elif target.gpu == "device-requests":
        parts += ["--gpus", "all"]
    if target.jtop_socket:
        parts += ["-v", "/run/jtop.sock:/run/jtop.sock"]
    if spec.api_key:
        parts += ["-e", flavors.get(spec.flavor).api_key_env]  # its value from the shell's environment
    return shlex.join(parts + [target.image, *target.argv(spec)])


def compose_service(spec: EngineSpec, target: ContainerTarget) -> str:
    lines = [
        "services:",
        "  llm:",
        f"    image: {target.image}",
        "    network_mode: host",
        "    shm_size: 8gb",
        "    restart: unless-stopped",
    ]
    if target.gpu == "runtime":
        lines.append(f"    runtime: {target.runtime}")
    elif target.gpu == "device-requests":
        lines += [
            "    deploy:",
            "      resources:",
            "        reservations:",
            "          devices:",
            "            - driver: nvidia",
            "              count: all",
            "              capabilities: [gpu]",
        ]
    lines += ["    volumes:", f"      - {target.models_volume}"]
    if target.jtop_socket:
        lines.append("      - /run/jtop.sock:/run/jtop.sock")
    if spec.api_key:
        lines += ["    environment:", f"      {flavors.get(spec.flavor).api_key_env}: ${{ZOE_ENGINE_API_KEY}}"]
    lines.append("    command:")
    lines += [f"      - {_yaml_str(a)}" for a in target.argv(spec)]
    return "\n".join(lines) + "\n"


def exports(settings: Settings, spec: EngineSpec, target: ContainerTarget) -> dict[str, str]:
    """The three forms of ``spec``: native (the flavour's command), docker_run, compose."""
    forms = {"native": flavors.get(spec.flavor).native_command(spec, settings)}
    if flavors.get(spec.flavor).runs_in_docker:
        forms.update(docker_run=docker_run_command(spec, target), compose=compose_service(spec, target))
    else:
        forms.update(docker_run="# this flavour runs as a native process only", compose="")
    return forms


def _yaml_str(text: str) -> str:
    import json

    return json.dumps(text)  # a JSON string is a valid YAML scalar, quoting included
