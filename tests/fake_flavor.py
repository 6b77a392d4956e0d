"""The fake engine as a flavour, registered through the real registry (as simonw/llm registers its
test models): ``register_fake()`` in-process, and ZOE_EXTRA_FLAVORS=fake_flavor:FAKE (with tests/
on PYTHONPATH) for the CLI and panel processes a test starts."""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from zoe_panel.engine import flavors
from zoe_panel.engine.base import EngineSpec
from zoe_panel.engine.flavors import Flavor
from zoe_panel.settings import Settings

SCRIPT = Path(__file__).with_name("fake_engine.py")
TESTS = str(Path(__file__).parent)


@dataclass(frozen=True)
class FakeFlavor(Flavor):
    def available(self, settings: Settings) -> tuple[bool, str]:
        return True, str(SCRIPT)

    def argv(self, spec: EngineSpec, settings: Settings) -> list[str]:
        argv = [sys.executable, str(SCRIPT), "--port", str(spec.port), "--host", spec.host, "--ctx", str(spec.ctx)]
        argv += ["--alias", spec.alias or "fake-model"]
        if spec.ctx >= 1_000_000:  # a context no machine holds: fail like an OOM at KV allocation
            argv.append("--fail-load")
        return argv

    def env(self, spec: EngineSpec) -> dict[str, str]:
        return {"FAKE_ENGINE_API_KEY": spec.api_key}

    def native_command(self, spec: EngineSpec, settings: Settings) -> str:
        return shlex.join(self.argv(spec, settings))

    def version(self, settings: Settings) -> str:
        return "fake engine (tests)"


FAKE = FakeFlavor(name="fake", label="fake engine (tests)", ready_markers=("server is listening",))


def register_fake() -> dict[str, str]:
    """Register in this process; returns the environment child processes need to see it too."""
    flavors.register(FAKE)
    path = os.environ.get("PYTHONPATH", "")
    return {"ZOE_EXTRA_FLAVORS": "fake_flavor:FAKE", "PYTHONPATH": os.pathsep.join(p for p in (TESTS, path) if p)}
