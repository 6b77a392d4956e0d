"""Composition root: one Runtime per process, shared by every browser session.

Pages call ``get_runtime()``; tests build their own ``Runtime`` and install it with
``set_runtime()``. Nothing here runs at import time.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from typing import Any

from zoe_panel.chat import ChatClient
from zoe_panel.engine.base import Engine, EngineSpec, EngineState, EngineStatus
from zoe_panel.engine.controller import EngineController
from zoe_panel.engine.process import ProcessEngine
from zoe_panel.errors import EngineNotRunning, InvalidModelError
from zoe_panel.models.store import ModelStore
from zoe_panel.settings import Settings, load_settings
from zoe_panel.telemetry.registry import pick_source
from zoe_panel.telemetry.ring import RingBuffer
from zoe_panel.telemetry.sampler import Sampler

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, settings: Settings, *, sampler: bool = True) -> None:
        self.settings = settings
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.store = ModelStore(settings.models_path, settings.state_dir / "gguf-cache.json")
        self.process_engine = ProcessEngine(settings)
        backends: dict[str, Engine] = {"process": self.process_engine}
        self.controller = EngineController(settings, backends)
        self.ring = RingBuffer(settings.ring_seconds)
        self.telemetry_notes: list[str] = []
        self.sampler: Sampler | None = None
        self._chat: tuple[tuple[str, str], ChatClient] | None = None
        self._chat_lock = threading.Lock()
        if sampler:
            self.start_sampler()

    # -- telemetry ------------------------------------------------------------------------
    def start_sampler(self) -> Sampler:
        if self.sampler is None:
            source, notes = pick_source(self.settings.telemetry)
            self.telemetry_notes = notes
            self.sampler = Sampler(
                source,
                self.ring,
                hz=self.settings.sample_hz,
                hz_loading=self.settings.sample_hz_loading,
                is_loading=self.controller.is_loading,
                engine_pid=self.engine_pid,
            )
            self.controller.add_listener(self._on_engine_event)
            self.sampler.start()
        return self.sampler

    def _on_engine_event(self, event: str, status: EngineStatus) -> None:
        if event == "start" and self.sampler is not None:
            self.sampler.boost(30.0)

    def engine_pid(self) -> int | None:
        return self.process_engine.engine_pid()

    # -- engine ---------------------------------------------------------------------------
    def default_spec(self, model: str, **overrides: Any) -> EngineSpec:
        """A spec for a model name in the store, with the panel's defaults and settings."""
        path = self.store.resolve(model)
        entry = self.store.entry(path)
        if not entry.ok:
            raise InvalidModelError(entry.error)
        spec = EngineSpec(
            model=str(path),
            host=self.settings.engine_host,
            port=self.settings.engine_port,
            flavor=self.settings.flavor,
            api_key=self.settings.engine_api_key,
            alias=path.stem,
        )
        return replace(spec, **overrides) if overrides else spec

    def start_engine(self, spec: EngineSpec) -> EngineStatus:
        return self.controller.start(spec)

    def chat_client(self) -> ChatClient:
        """A shared client for the READY engine; httpx.Client is thread-safe and keeps
        connections alive, which saves a TCP handshake on every reply."""
        st = self.controller.status()
        if st.state != EngineState.READY or st.base_url is None or st.spec is None:
            raise EngineNotRunning(f"no engine is READY (state {st.state.value}); start one on the Engine page")
        key = (st.base_url, st.spec.api_key)
        with self._chat_lock:
            if self._chat is None or self._chat[0] != key:
                if self._chat is not None:
                    self._chat[1].close()
                self._chat = (key, ChatClient(st.base_url, api_key=st.spec.api_key))
            return self._chat[1]

    def close(self) -> None:
        if self.sampler is not None:
            self.sampler.stop()
        if self._chat is not None:
            self._chat[1].close()


_runtime: Runtime | None = None
_lock = threading.Lock()


def get_runtime() -> Runtime:
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = Runtime(load_settings())
        return _runtime


def set_runtime(runtime: Runtime | None) -> None:
    global _runtime
    with _lock:
        old, _runtime = _runtime, runtime
    if old is not None and old is not runtime:
        old.close()
