"""Engine flavours: what runs (llama-server, llama-cpp-python's server, ...), as objects.

A flavour carries everything that differs between engine programs: how to check it is installed,
its argv and environment for a spec, how readiness is probed, how many sequences share its KV cache
(the memory estimate's rule), how its log says the model is loaded, and the command an operator
can paste elsewhere. Adding one is a module plus one line in ``_BUILTIN`` (or ``register`` from a
test, as the fake engine does): nothing else tests flavour names.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zoe_panel.engine.argv import Capabilities
    from zoe_panel.engine.base import EngineSpec
    from zoe_panel.settings import Settings


@dataclass(frozen=True)
class ModelSlot:
    """One model of an engine that serves several (router mode)."""

    name: str
    state: str  # unloaded | loading | loaded | failed
    detail: str = ""


@dataclass(frozen=True)
class Flavor:
    """The behaviour of one engine program; subclasses fill in the methods."""

    name: str = ""
    label: str = ""
    readiness_path: str = "/health"  # 503 while loading, 200 when ready
    tcp_probe_once_loaded: bool = False  # a probe that takes the model lock would cut streams
    keeps_all_logits: bool = False  # logits of every token in a batch (the compute buffer)
    # llama-server's prompt cache (--cache-ram) and context checkpoints (--ctx-checkpoints): memory
    # that grows after READY. llama-cpp-python's server keeps neither by default.
    grows_after_load: bool = True
    splits_slots: bool = True  # --parallel slots exist (else one sequence)
    runs_in_docker: bool = False
    streams_prompt_progress: bool = False  # return_progress: prompt processing reported while it runs
    multi_model: bool = False  # serves several models, picked by the request's "model" field
    supports_rpc: bool = False  # --rpc host:port,… (a model split over rpc-server workers)
    memory_model: str = "llama.cpp"  # how the estimate sizes it: llama.cpp's rules, or "vllm"
    api_key_env: str = "LLAMA_API_KEY"  # the variable the engine reads its API key from
    image_has_llama_server: bool = True  # its image's llama-server --version/--help are the capabilities
    ready_markers: tuple[str, ...] = field(default=())
    # what to do when its binary dies with SIGILL (built for instructions this CPU cannot run)
    safe_rebuild: tuple[str, ...] = field(default=())

    def available(self, settings: Settings) -> tuple[bool, str]:
        raise NotImplementedError

    def check_model(self, spec: EngineSpec) -> None:
        """Refuse a spec whose model is not there (a GGUF file; a folder for a multi-model engine)."""
        from pathlib import Path

        from zoe_panel.errors import EngineError

        if not Path(spec.model).is_file():
            raise EngineError(f"model file {spec.model} does not exist")

    # -- engines serving several models (router mode); one model: these are not used ---------------
    def models(self, spec: EngineSpec, base_url: str) -> list[ModelSlot]:
        return []

    def load_model(self, spec: EngineSpec, base_url: str, name: str) -> None:
        from zoe_panel.errors import ConfigError

        raise ConfigError(f"the {self.name} flavour serves one model: start it with another")

    def unload_model(self, spec: EngineSpec, base_url: str, name: str) -> None:
        self.load_model(spec, base_url, name)

    def sequences(self, spec: EngineSpec) -> int:
        """Sequences that share the KV cache: the slots, or 1 for engines without slots."""
        return max(1, spec.parallel) if self.splits_slots else 1

    def normalize(self, spec: EngineSpec) -> EngineSpec:
        """The spec as this engine will run it (one slot where there are no slots)."""
        if spec.rpc and not self.supports_rpc:
            from zoe_panel.errors import ConfigError

            raise ConfigError(
                f"the {self.name} flavour cannot split a model over RPC workers; use llama-server (native or Docker)"
            )
        return spec if self.splits_slots else replace(spec, parallel=1)

    def argv(self, spec: EngineSpec, settings: Settings) -> list[str]:
        """The native command line (raises BinaryNotFound when the program is missing)."""
        raise NotImplementedError

    def container_argv(self, spec: EngineSpec, binary: str, caps: Capabilities) -> list[str]:
        from zoe_panel.errors import ConfigError

        raise ConfigError(f"the {self.name} flavour does not run in a container; use the process backend")

    def env(self, spec: EngineSpec) -> dict[str, str]:
        return {}

    def docker_image(self, settings: Settings, llama_image: str) -> str:
        """The image this flavour runs in (``llama_image``: the engine image the settings pick)."""
        return llama_image

    def container_env(self, spec: EngineSpec, gpu: str) -> dict[str, str]:
        """The container's environment (``gpu``: runtime | device-requests | none)."""
        return self.env(spec)

    def check_extra(self, args: list[str] | tuple[str, ...]) -> tuple[str, ...]:
        """The operator's extra flags, checked against this engine's allow-list (llama-server's here)."""
        from zoe_panel.engine.argv import check_extra_args

        return check_extra_args(args)

    def env_for(self, spec: EngineSpec, settings: Settings) -> dict[str, str]:
        """The environment with the panel's settings at hand (paths under the state folder)."""
        return self.env(spec)

    def native_command(self, spec: EngineSpec, settings: Settings) -> str:
        """A shell line that runs this spec elsewhere; the key stays a variable reference."""
        raise NotImplementedError

    def version(self, settings: Settings) -> str:
        return ""


# name -> "module:attribute". Adding a flavour: a module, and a line here.
_BUILTIN = {
    "llama-server": "zoe_panel.engine.flavors.llama_server:FLAVOR",
    "llama-cpp-python": "zoe_panel.engine.flavors.llama_cpp_python:FLAVOR",
    "router": "zoe_panel.engine.flavors.router:FLAVOR",
    "vllm": "zoe_panel.engine.flavors.vllm:FLAVOR",
}
_EXTRA: dict[str, Flavor] = {}


def _load_extras() -> None:
    """Flavours named by ZOE_EXTRA_FLAVORS ("module:attribute,..."), once: how a test's fake engine
    reaches the CLI and panel processes it starts."""
    global _extras_loaded
    if _extras_loaded:
        return
    _extras_loaded = True
    import os

    for target in filter(None, (x.strip() for x in os.environ.get("ZOE_EXTRA_FLAVORS", "").split(","))):
        module, _, attr = target.partition(":")
        register(getattr(importlib.import_module(module), attr))


_extras_loaded = False


def register(flavor: Flavor) -> None:
    """Add a flavour at run time (tests register their fake engine this way)."""
    _EXTRA[flavor.name] = flavor


def unregister(name: str) -> None:
    _EXTRA.pop(name, None)


def names() -> tuple[str, ...]:
    _load_extras()
    return (*_BUILTIN, *(n for n in _EXTRA if n not in _BUILTIN))


def get(name: str) -> Flavor:
    _load_extras()
    if name in _EXTRA:
        return _EXTRA[name]
    target = _BUILTIN.get(name)
    if target is None:
        from zoe_panel.errors import ConfigError

        raise ConfigError(f"flavor {name!r} is not one of {', '.join(names())}")
    module, _, attr = target.partition(":")
    flavor: Flavor = getattr(importlib.import_module(module), attr)
    return flavor
