"""llama.cpp's own server: the default flavour, native or in the engine container."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

from zoe_panel.engine.argv import Capabilities, llama_server_argv
from zoe_panel.engine.flavors import Flavor

if TYPE_CHECKING:
    from zoe_panel.engine.base import EngineSpec
    from zoe_panel.settings import Settings

# Lines meaning the model loaded: a crash after one is worth a restart, before one it is not.
READY_MARKERS = ("listening on", "server is listening", "model loaded")


@dataclass(frozen=True)
class LlamaServer(Flavor):
    def available(self, settings: Settings) -> tuple[bool, str]:
        from zoe_panel.engine.binary import find_llama_server
        from zoe_panel.errors import BinaryNotFound

        try:
            return True, find_llama_server(settings)
        except BinaryNotFound as e:
            return False, str(e)

    def argv(self, spec: EngineSpec, settings: Settings) -> list[str]:
        from zoe_panel.engine.binary import capabilities, find_llama_server

        binary = find_llama_server(settings)
        return llama_server_argv(binary, spec, capabilities(binary, settings.state_dir / "binaries.json"))

    def container_argv(self, spec: EngineSpec, binary: str, caps: Capabilities) -> list[str]:
        return llama_server_argv(binary, spec, caps)

    def env(self, spec: EngineSpec) -> dict[str, str]:
        # the API key travels in the environment, not in argv (visible in ps)
        env = {"LLAMA_ARG_LOG_COLORS": "off", "LLAMA_LOG_COLORS": "off"}
        if spec.api_key:
            env["LLAMA_API_KEY"] = spec.api_key
        return env

    def native_command(self, spec: EngineSpec, settings: Settings) -> str:
        from zoe_panel.engine.binary import find_llama_server
        from zoe_panel.errors import ZoePanelError

        try:
            binary = find_llama_server(settings)
        except ZoePanelError:
            binary = "llama-server"  # still a useful line to paste on a machine that has one
        prefix = 'LLAMA_API_KEY="$ZOE_ENGINE_API_KEY" ' if spec.api_key else ""
        return prefix + shlex.join(llama_server_argv(binary, spec, None))

    def version(self, settings: Settings) -> str:
        from zoe_panel.engine.binary import build_of, capabilities, find_llama_server

        binary = find_llama_server(settings)
        caps = capabilities(binary, settings.state_dir / "binaries.json")
        build = build_of(settings, binary)
        return f"{caps.version} (build {caps.build}, {caps.commit})" + (f", {build}" if build else "")


FLAVOR = LlamaServer(
    name="llama-server",
    label="llama-server (llama.cpp)",
    runs_in_docker=True,
    streams_prompt_progress=True,
    supports_rpc=True,
    ready_markers=READY_MARKERS,
    safe_rebuild=(
        "rebuild with the safe variant: ZOE_BUILD_VARIANT=portable make llama-server (runtime CPU dispatch, "
        "as upstream releases)",
        "or run `make llama-server`: it smoke-runs each build and falls back by itself when one crashes",
    ),
)
