"""EngineController: one engine per machine, whatever the number of tabs, panels or CLIs.

Start and stop take a file lock under the state folder, so two browser sessions (threads of one
panel) or a panel and the CLI (two processes) can never start two engines. Status is cached for
a fraction of a second because every open tab polls it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from filelock import FileLock, Timeout

from zoe_panel.engine.base import Engine, EngineSpec, EngineState, EngineStatus
from zoe_panel.errors import EngineBusyError, EngineError, EngineNotRunning
from zoe_panel.settings import Settings

Listener = Callable[[str, EngineStatus], None]


@dataclass
class _Cached:
    at: float
    status: EngineStatus


class EngineController:
    def __init__(self, settings: Settings, backends: dict[str, Engine]) -> None:
        self.settings = settings
        self.backends = backends
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        self._file_lock = FileLock(str(settings.state_dir / "engine.lock"), timeout=0)
        self._thread_lock = threading.Lock()
        self._cache: _Cached | None = None
        self._cache_lock = threading.Lock()
        self._listeners: list[Listener] = []

    def add_listener(self, fn: Listener) -> None:
        """``fn(event, status)`` with event in {'start', 'stop'}; called after the action."""
        self._listeners.append(fn)

    def _emit(self, event: str, status: EngineStatus) -> None:
        for fn in self._listeners:
            try:
                fn(event, status)
            except Exception:
                import logging

                logging.getLogger(__name__).exception("engine listener failed")

    # -- status ---------------------------------------------------------------------------
    def status(self, *, max_age_s: float = 0.25) -> EngineStatus:
        now = time.monotonic()
        with self._cache_lock:
            if self._cache and now - self._cache.at <= max_age_s:
                return self._cache.status
        status = self._fresh_status()
        with self._cache_lock:
            self._cache = _Cached(time.monotonic(), status)
        return status

    def _fresh_status(self) -> EngineStatus:
        """The running engine, whichever backend holds it; else the latest stopped/failed one."""
        fallback: EngineStatus | None = None
        for backend in self.backends.values():
            try:
                st = backend.status()
            except EngineError as e:
                st = EngineStatus(EngineState.STOPPED, backend=backend.name, reason=str(e))
            except Exception as e:  # noqa: BLE001 - one backend's breakage must never stop another's Start
                logging.getLogger(__name__).warning("backend %s unavailable: %s", backend.name, e)
                st = EngineStatus(EngineState.STOPPED, backend=backend.name, reason=f"unavailable: {e}")
            if st.state.is_running:
                return st
            if fallback is None or (st.started_at or 0) > (fallback.started_at or 0):
                fallback = st
        return fallback or EngineStatus(EngineState.STOPPED)

    def invalidate(self) -> None:
        with self._cache_lock:
            self._cache = None

    def is_loading(self) -> bool:
        return self.status(max_age_s=1.0).state == EngineState.STARTING

    # -- actions --------------------------------------------------------------------------
    def start(self, spec: EngineSpec, *, backend: str = "process") -> EngineStatus:
        if backend not in self.backends:
            raise EngineError(f"backend {backend!r} is not available here")
        if not self._thread_lock.acquire(blocking=False):
            raise EngineBusyError("another Start is in progress; wait for it to finish")
        try:
            try:
                self._file_lock.acquire()
            except Timeout:
                raise EngineBusyError("another Start or Stop is in progress (panel or CLI); try again") from None
            try:
                self.invalidate()
                current = self._fresh_status()
                if current.state.is_running:
                    raise EngineBusyError(
                        f"an engine is already running ({current.spec.model_name if current.spec else '?'}, "
                        f"{current.state.value}); stop it first"
                    )
                run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
                status = self.backends[backend].start(spec, run_id=run_id)
            finally:
                self._file_lock.release()
        finally:
            self._thread_lock.release()
        self.invalidate()
        self._emit("start", status)
        return status

    def stop(self, *, timeout_s: float | None = None) -> EngineStatus:
        timeout = self.settings.stop_timeout_s if timeout_s is None else timeout_s
        with self._thread_lock:
            try:
                self._file_lock.acquire(timeout=timeout + 10)
            except Timeout:
                raise EngineBusyError("another Start or Stop is in progress; try again") from None
            try:
                self.invalidate()
                current = self._fresh_status()
                if not current.state.is_running and current.state != EngineState.FAILED:
                    raise EngineNotRunning("no engine is running (nothing to stop)")
                backend = self.backends.get(current.backend)
                if backend is None:
                    raise EngineError(f"the running engine belongs to backend {current.backend!r}, not available")
                status = backend.stop(timeout)
            finally:
                self._file_lock.release()
        self.invalidate()
        self._emit("stop", status)
        return status

    def wait_ready(self, timeout_s: float, *, poll_s: float = 0.05) -> EngineStatus:
        """Poll fast until READY or a terminal state; raise EngineError on failure or timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            st = self.status(max_age_s=0)
            if st.state == EngineState.READY:
                return st
            if st.state in (EngineState.FAILED, EngineState.STOPPED) and not (
                st.state == EngineState.FAILED and "restarting" in st.reason
            ):
                raise EngineError(f"engine {st.state.value}: {st.reason}".strip())
            if time.monotonic() > deadline:
                raise EngineError(f"engine not READY after {timeout_s:.0f} s (state {st.state.value})")
            time.sleep(poll_s)

    def logs(self, tail: int = 200) -> list[str]:
        st = self.status()
        backend = self.backends.get(st.backend) or next(iter(self.backends.values()))
        return backend.logs(tail)
