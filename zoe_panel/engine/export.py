"""The current configuration as something an operator pastes elsewhere: the native command line,
``docker run``, and a docker-compose service block. Pure functions but ``exports``; the API key is left as a
variable reference so it never lands in a shell history or a compose file in clear."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from zoe_panel.engine.argv import Capabilities, llama_cpp_python_argv, llama_server_argv
from zoe_panel.engine.base import EngineSpec

if TYPE_CHECKING:
    from zoe_panel.runtime import Runtime

MODELS_MOUNT = "/models"


def native_command(spec: EngineSpec, binary: str, caps: Capabilities | None = None) -> str:
    argv = (
        llama_cpp_python_argv("python3", replace(spec, api_key=""))
        if spec.flavor == "llama-cpp-python"
        else llama_server_argv(binary, spec, caps)
    )
    prefix = 'LLAMA_API_KEY="$ZOE_ENGINE_API_KEY" ' if spec.api_key and spec.flavor == "llama-server" else ""
    return prefix + shlex.join(argv)


@dataclass(frozen=True)
class ContainerTarget:
    """Where an exported engine container runs: image, models folder and GPU wiring."""

    image: str
    models_root: Path
    binary: str = "llama-server"
    gpu: str = "runtime"  # runtime | device-requests | none, as DockerEngine.gpu_mode()
    runtime: str = "nvidia"
    caps: Capabilities | None = None
    jtop_socket: bool = False

    def argv(self, spec: EngineSpec) -> list[str]:
        rel = Path(spec.model).resolve().relative_to(self.models_root.resolve()).as_posix()
        return llama_server_argv(self.binary, replace(spec, model=f"{MODELS_MOUNT}/{rel}"), self.caps)

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
        parts += ["-e", "LLAMA_API_KEY"]
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
        lines += ["    environment:", "      LLAMA_API_KEY: ${ZOE_ENGINE_API_KEY}"]
    lines.append("    command:")
    lines += [f"      - {_yaml_str(a)}" for a in target.argv(spec)]
    return "\n".join(lines) + "\n"


def exports(rt: Runtime, spec: EngineSpec, *, image: str | None = None) -> dict[str, str]:
    """The three forms of ``spec`` for this panel's settings: native, docker_run, compose."""
    from zoe_panel.engine.binary import find_llama_server
    from zoe_panel.errors import ZoePanelError

    eng = rt.docker_engine
    target = ContainerTarget(
        image=image or eng.image_ref(),
        models_root=rt.store.root,
        binary=rt.settings.docker_llama_server,
        gpu=eng.gpu_mode(),
        runtime=rt.settings.docker_runtime,
        jtop_socket=rt.settings.jtop_socket.exists(),
    )
    try:
        binary = find_llama_server(rt.settings)
    except ZoePanelError:
        binary = "llama-server"  # still a useful line to paste on a machine that has one
    return {
        "native": native_command(spec, binary),
        "docker_run": docker_run_command(spec, target),
        "compose": compose_service(spec, target),
    }


def _yaml_str(text: str) -> str:
    import json

    return json.dumps(text)  # a JSON string is a valid YAML scalar, quoting included
