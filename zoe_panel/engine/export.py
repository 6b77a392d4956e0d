"""The current configuration as something an operator pastes elsewhere: the native command line,
``docker run``, and a docker-compose service block. Pure functions; the API key is left as a
variable reference so it never lands in a shell history or a compose file in clear."""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path

from zoe_panel.engine.argv import Capabilities, llama_cpp_python_argv, llama_server_argv
from zoe_panel.engine.base import EngineSpec

MODELS_MOUNT = "/models"


def native_command(spec: EngineSpec, binary: str, caps: Capabilities | None = None) -> str:
    argv = (
        llama_cpp_python_argv("python3", replace(spec, api_key=""))
        if spec.flavor == "llama-cpp-python"
        else llama_server_argv(binary, spec, caps)
    )
    prefix = 'LLAMA_API_KEY="$ZOE_ENGINE_API_KEY" ' if spec.api_key and spec.flavor == "llama-server" else ""
    return prefix + shlex.join(argv)


def _inner(spec: EngineSpec, models_root: Path) -> EngineSpec:
    rel = Path(spec.model).resolve().relative_to(models_root.resolve()).as_posix()
    return replace(spec, model=f"{MODELS_MOUNT}/{rel}")


def docker_run_command(
    spec: EngineSpec,
    *,
    image: str,
    models_root: Path,
    binary: str = "llama-server",
    gpu: str = "runtime",
    runtime: str = "nvidia",
    caps: Capabilities | None = None,
    jtop_socket: bool = False,
) -> str:
    argv = llama_server_argv(binary, _inner(spec, models_root), caps)
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
        f"{models_root.resolve()}:{MODELS_MOUNT}:ro",
        "--restart",
        "unless-stopped",
    ]
    if gpu == "runtime":
        parts += ["--runtime", runtime]
    elif gpu == "device-requests":
        parts += ["--gpus", "all"]
    if jtop_socket:
        parts += ["-v", "/run/jtop.sock:/run/jtop.sock"]
    if spec.api_key:
        parts += ["-e", "LLAMA_API_KEY"]
    return shlex.join(parts + [image, *argv])


def compose_service(
    spec: EngineSpec,
    *,
    image: str,
    models_root: Path,
    binary: str = "llama-server",
    gpu: str = "runtime",
    runtime: str = "nvidia",
    caps: Capabilities | None = None,
    jtop_socket: bool = False,
) -> str:
    argv = llama_server_argv(binary, _inner(spec, models_root), caps)
    lines = [
        "services:",
        "  llm:",
        f"    image: {image}",
        "    network_mode: host",
        "    shm_size: 8gb",
        "    restart: unless-stopped",
    ]
    if gpu == "runtime":
        lines.append(f"    runtime: {runtime}")
    elif gpu == "device-requests":
        lines += [
            "    deploy:",
            "      resources:",
            "        reservations:",
            "          devices:",
            "            - driver: nvidia",
            "              count: all",
            "              capabilities: [gpu]",
        ]
    lines += ["    volumes:", f"      - {models_root.resolve()}:{MODELS_MOUNT}:ro"]
    if jtop_socket:
        lines.append("      - /run/jtop.sock:/run/jtop.sock")
    if spec.api_key:
        lines += ["    environment:", "      LLAMA_API_KEY: ${ZOE_ENGINE_API_KEY}"]
    lines.append("    command:")
    lines += [f"      - {_yaml_str(a)}" for a in argv]
    return "\n".join(lines) + "\n"


def _yaml_str(text: str) -> str:
    import json

    return json.dumps(text)  # a JSON string is a valid YAML scalar, quoting included
