"""llama-cpp-python's OpenAI-compatible server (``python -m llama_cpp.server``), in this venv.

It has no /health (readiness is /v1/models, which takes the model lock, so once it is up only the
TCP port is checked), one sequence, and it keeps the logits of every token in a batch.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from zoe_panel.engine.argv import llama_cpp_python_argv
from zoe_panel.engine.flavors import Flavor

if TYPE_CHECKING:
    from zoe_panel.engine.base import EngineSpec
    from zoe_panel.settings import Settings


@dataclass(frozen=True)
class LlamaCppPython(Flavor):
    def available(self, settings: Settings) -> tuple[bool, str]:
        from zoe_panel.engine.binary import python_server_available

        return python_server_available()

    def argv(self, spec: EngineSpec, settings: Settings) -> list[str]:
        from zoe_panel.errors import BinaryNotFound

        ok, detail = self.available(settings)
        if not ok:
            raise BinaryNotFound(detail)
        return llama_cpp_python_argv(sys.executable, spec)

    def env(self, spec: EngineSpec) -> dict[str, str]:
        return {}

    def native_command(self, spec: EngineSpec, settings: Settings) -> str:
        return shlex.join(llama_cpp_python_argv("python3", replace(spec, api_key="")))

    def version(self, settings: Settings) -> str:
        import importlib.metadata

        from zoe_panel.engine.binary import python_build

        build = python_build(settings)
        return f"llama-cpp-python {importlib.metadata.version('llama_cpp_python')}" + (f", {build}" if build else "")


FLAVOR = LlamaCppPython(
    name="llama-cpp-python",
    label="llama-cpp-python server",
    readiness_path="/v1/models",
    tcp_probe_once_loaded=True,
    keeps_all_logits=True,
    splits_slots=False,
    grows_after_load=False,
    ready_markers=("Uvicorn running on",),
    safe_rebuild=(
        "rebuild llama-cpp-python with the safe variant: ZOE_BUILD_VARIANT=portable make setup "
        "(the panel builds its own wheel and checks it decodes)",
    ),
)
