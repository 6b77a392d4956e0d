"""Several models behind one engine: llama-server's router mode.

llama-server started without a model, with ``--models-dir``, serves every GGUF of that folder as a
model id (the file name without .gguf), each in a llama-server instance of its own that the router
starts and stops (``POST /models/load``, ``/models/unload``, states in ``GET /models``) and picks
requests for by their ``"model"`` field. Per-model settings come from a presets file (INI, one
section per model id) the panel writes from its own presets.

``--no-models-autoload``: a request naming a model that is not loaded gets HTTP 400 "model is not
loaded" instead of loading it behind the panel's back; the panel loads models itself, after its
memory admission (zoe_panel/admission.py). Instances inherit the router's flags (-lv 4, -n, the
key) and their log lines come through the router's, prefixed with their pid.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from zoe_panel.engine.argv import Capabilities, check_extra_args, llama_server_argv
from zoe_panel.engine.flavors import ModelSlot
from zoe_panel.engine.flavors.llama_server import FLAVOR as LLAMA_SERVER
from zoe_panel.engine.flavors.llama_server import READY_MARKERS, LlamaServer

if TYPE_CHECKING:
    from zoe_panel.engine.base import EngineSpec
    from zoe_panel.settings import Settings

PRESETS_FILE = "router-presets.ini"
DEFAULT_MODELS_MAX = 4
_PID_PREFIX = re.compile(r"^\[(\d+)\] ")
_LOADING = re.compile(r"load_model: loading model '([^']+)'")


def model_id(file_name: str) -> str:
    """The router's id of a model file: its name without .gguf."""
    return file_name[: -len(".gguf")] if file_name.lower().endswith(".gguf") else file_name


def models_max(spec: EngineSpec) -> tuple[int, tuple[str, ...]]:
    """--models-max N travels in the spec's extra arguments; (N, the other extra arguments)."""
    args = list(spec.extra_args)
    if "--models-max" in args:
        i = args.index("--models-max")
        value = int(args[i + 1]) if i + 1 < len(args) and args[i + 1].isdigit() else DEFAULT_MODELS_MAX
        return value, tuple(args[:i] + args[i + 2 :])
    return DEFAULT_MODELS_MAX, tuple(args)


def preset_ini(sections: dict[str, dict[str, Any]]) -> str:
    """The router's presets file: one section per model id, keys as llama-server's long flags."""
    lines = ["version = 1", ""]
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {_ini(value)}" for key, value in values.items()]
        lines.append("")
    return "\n".join(lines)


def _ini(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def slot_of(entry: dict[str, Any]) -> ModelSlot:
    status = entry.get("status") or {}
    value = str(status.get("value", "unloaded"))
    if status.get("failed"):
        return ModelSlot(str(entry.get("id")), "failed", f"exit code {status.get('exit_code')}")
    return ModelSlot(str(entry.get("id")), value)


def instance_models(lines: list[str]) -> dict[str, str]:
    """pid -> model id, from the instances' 'loading model' lines in the router's log."""
    out: dict[str, str] = {}
    for line in lines:
        m = _PID_PREFIX.match(line)
        if m and (found := _LOADING.search(line)):
            out[m.group(1)] = model_id(Path(found.group(1)).name)
    return out


@dataclass(frozen=True)
class Router(LlamaServer):
    def check_model(self, spec: EngineSpec) -> None:
        from zoe_panel.errors import EngineError

        if not Path(spec.model).is_dir():
            raise EngineError(f"router mode serves a models folder; {spec.model} is not one")

    def argv(self, spec: EngineSpec, settings: Settings) -> list[str]:
        from zoe_panel.engine.binary import capabilities, find_llama_server

        binary = find_llama_server(settings)
        return self.router_argv(binary, spec, capabilities(binary, settings.state_dir / "binaries.json"), settings)

    def router_argv(self, binary: str, spec: EngineSpec, caps: Capabilities, settings: Settings) -> list[str]:
        """llama-server's single-model argv with the model swapped for the folder, the presets file and
        the router's own flags. What every instance shares stays on the router's command line."""
        n, rest = models_max(spec)
        base = llama_server_argv(binary, replace(spec, extra_args=()), caps)
        i = base.index("-m")
        base = base[:i] + base[i + 2 :]
        # per model (preset) and per model id (the router sets the alias); the prompt cache and the
        # checkpoints are per model too, sized in each model's preset
        for flag in ("-c", "-a", "--cache-ram", "--ctx-checkpoints", "--swa-checkpoints"):
            if flag in base:
                j = base.index(flag)
                base = base[:j] + base[j + 2 :]
        presets = settings.state_dir / PRESETS_FILE
        return [
            *base,
            "--models-dir",
            spec.model,
            "--models-preset",
            str(presets),
            "--models-max",
            str(n),
            "--no-models-autoload",
            *check_extra_args(rest),
        ]

    def native_command(self, spec: EngineSpec, settings: Settings) -> str:
        prefix = 'LLAMA_API_KEY="$ZOE_ENGINE_API_KEY" ' if spec.api_key else ""
        return prefix + shlex.join(self.router_argv("llama-server", spec, Capabilities(), settings))

    # -- the models ---------------------------------------------------------------------------
    def _http(self, spec: EngineSpec, method: str, url: str, body: dict[str, Any] | None = None) -> Any:
        from zoe_panel.errors import EngineError

        headers = {"Authorization": f"Bearer {spec.api_key}"} if spec.api_key else {}
        try:
            r = httpx.request(method, url, json=body, headers=headers, timeout=30.0)
        except httpx.HTTPError as e:
            raise EngineError(f"the router did not answer {url}: {e}") from None
        if r.status_code != 200:
            raise EngineError(f"the router refused {url}: HTTP {r.status_code} {r.text[:200]}")
        return r.json()

    def models(self, spec: EngineSpec, base_url: str) -> list[ModelSlot]:
        data = self._http(spec, "GET", base_url + "/models")
        return sorted((slot_of(e) for e in data.get("data") or []), key=lambda s: s.name)

    def load_model(self, spec: EngineSpec, base_url: str, name: str) -> None:
        self._http(spec, "POST", base_url + "/models/load", {"model": model_id(name)})

    def unload_model(self, spec: EngineSpec, base_url: str, name: str) -> None:
        self._http(spec, "POST", base_url + "/models/unload", {"model": model_id(name)})


FLAVOR = Router(
    name="router",
    label="llama-server router (several models)",
    multi_model=True,
    streams_prompt_progress=True,
    ready_markers=READY_MARKERS,
    safe_rebuild=LLAMA_SERVER.safe_rebuild,
)


def write_presets(path: Path, sections: dict[str, dict[str, Any]]) -> None:
    """Write the presets file in one step (the router reads it at start and on /models?reload=1)."""
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(preset_ini(sections))
    os.replace(tmp, path)
