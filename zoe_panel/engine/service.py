"""EngineService: the one front door to the engine. Start, stop, status, wait, diagnose.

One engine per machine, whatever the number of tabs, panels or CLIs: Start and Stop take a file
lock under the state folder, so two browser sessions (threads of one panel) or a panel and the CLI
(two processes) never start two engines. Status is derived from the world by the backend that
holds the engine and cached for a fraction of a second, because every open tab polls it. Every
action is audited here, with the client that asked; pages and the CLI call nothing else.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from filelock import FileLock, Timeout

from zoe_panel.engine import backends as backend_registry
from zoe_panel.engine import flavors
from zoe_panel.engine.base import Backend, EngineSpec, EngineState, EngineStatus
from zoe_panel.engine.flavors import ModelSlot
from zoe_panel.engine.loadlog import LoadEvent, parse_lines
from zoe_panel.engine.logfile import parse_stamped
from zoe_panel.errors import EngineBusyError, EngineError, EngineNotRunning
from zoe_panel.settings import Settings

if TYPE_CHECKING:
    from zoe_panel.engine.docker import DockerEngine

log = logging.getLogger(__name__)
Listener = Callable[[str, EngineStatus], None]
Audit = Callable[..., None]  # audit(action, outcome, *, client, target, detail)


class Diagnosis(Protocol):
    """What a diagnoser returns (zoe_panel.diagnosis.Diagnosis, composed in by the Runtime: the
    engine package knows nothing of memory estimates)."""

    @property
    def kind(self) -> str: ...

    @property
    def title(self) -> str: ...

    @property
    def detail(self) -> str: ...

    @property
    def fixes(self) -> tuple[str, ...]: ...

    def text(self) -> str: ...


Diagnoser = Callable[[EngineStatus, list[LoadEvent], str], "Diagnosis | None"]


@dataclass
class _Cached:
    at: float
    status: EngineStatus


class EngineService:
    def __init__(
        self,
        settings: Settings,
        backends: dict[str, Backend] | None = None,
        *,
        audit: Audit | None = None,
        diagnoser: Diagnoser | None = None,
    ) -> None:
        self.settings = settings
        self.backends = backends if backends is not None else backend_registry.make_backends(settings)
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        self._file_lock = FileLock(str(settings.state_dir / "engine.lock"), timeout=0)
        self._thread_lock = threading.Lock()
        self._cache: _Cached | None = None
        self._cache_lock = threading.Lock()
        # (run, pid) -> placement note: it is read from the load part of the log, which does not
        # change after READY, and the Engine page asks for it every second
        self._placement: tuple[tuple[str | None, int | None], str | None] | None = None
        self._listeners: list[Listener] = []
        self._audit = audit
        self._diagnoser = diagnoser

    def add_listener(self, fn: Listener) -> None:
        """``fn(event, status)`` with event in {'start', 'stop'} (after the action) or 'load' (a
        multi-model engine is about to load a model)."""
        self._listeners.append(fn)

    def _emit(self, event: str, status: EngineStatus) -> None:
        for fn in self._listeners:
            try:
                fn(event, status)
            except Exception:
                log.exception("engine listener failed")

    def audit(self, action: str, outcome: str, *, client: str, target: str = "", detail: str = "") -> None:
        if self._audit is not None:
            self._audit(action, outcome, client=client, target=target, detail=detail)

    # -- status -----------------------------------------------------------------------------
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
                log.warning("backend %s unavailable: %s", backend.name, e)
                st = EngineStatus(EngineState.STOPPED, backend=backend.name, reason=f"unavailable: {e}")
            if st.state.is_running:
                return st
            if fallback is None or (st.started_at or 0) > (fallback.started_at or 0):
                fallback = st
        return fallback or EngineStatus(EngineState.STOPPED)

    def invalidate(self) -> None:
        with self._cache_lock:
            self._cache = None

    def background_status(self) -> EngineStatus:
        """The status for work in the background (the sampler, the run recorder): at most 0.2 s old
        while an engine starts (READY is timed from it), 2 s otherwise. Each fresh status of a running
        engine is an HTTP probe that costs the panel and wakes the engine; at every sample, that was
        most of an idle panel's own cost."""
        with self._cache_lock:
            cached = self._cache
        starting = cached is None or cached.status.state == EngineState.STARTING
        return self.status(max_age_s=0.2 if starting else 2.0)

    def is_loading(self) -> bool:
        return self.background_status().state == EngineState.STARTING

    def engine_pid(self) -> int | None:
        """The engine's host pid (a container's processes are host processes too)."""
        st = self.background_status()
        return st.pid if st.state.is_running else None

    def logs(self, tail: int = 200) -> list[str]:
        st = self.background_status()  # only which backend holds the engine: no probe needed for that
        backend = self.backends.get(st.backend) or next(iter(self.backends.values()))
        return backend.logs(tail)

    def load_events(self, tail: int = 600) -> list[LoadEvent]:
        return parse_lines((ln.t, ln.text) for ln in map(parse_stamped, self.logs(tail)))

    # -- actions ----------------------------------------------------------------------------
    def choose_backend(self, requested: str | None = None) -> str:
        return backend_registry.choose(self.settings, self.backends, requested)

    def start(self, spec: EngineSpec, *, backend: str | None = None, client: str = "panel") -> EngineStatus:
        """Start ``spec`` (as its flavour runs it) on the chosen backend; audited either way."""
        try:
            spec = flavors.get(spec.flavor).normalize(spec)
            self.check_workers(spec)
            status = self._start(spec, self.choose_backend(backend))
        except EngineError as e:
            self.audit("start", "refused", client=client, target=spec.model_name, detail=str(e)[:300])
            raise
        self.audit("start", "ok", client=client, target=spec.model_name, detail=f"ctx {spec.ctx} {status.backend}")
        return status

    def check_workers(self, spec: EngineSpec) -> None:
        """Every RPC worker must answer before Start: llama-server aborts on the first one that does
        not, without saying which when the connection breaks later. Name each node and what to do."""
        if not spec.rpc:
            return
        from zoe_panel.errors import WorkerUnavailable
        from zoe_panel.workers.probe import probe_all

        bad = [p for p in probe_all(spec.rpc, timeout_s=self.settings.rpc_probe_timeout_s) if not p.ok]
        if bad:
            raise WorkerUnavailable("; ".join(p.message() for p in bad))

    def _start(self, spec: EngineSpec, backend: str) -> EngineStatus:
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

    def stop(self, *, timeout_s: float | None = None, client: str = "panel") -> EngineStatus:
        timeout = self.settings.stop_timeout_s if timeout_s is None else timeout_s
        try:
            status = self._stop(timeout)
        except EngineError as e:
            self.audit("stop", "refused", client=client, detail=str(e)[:300])
            raise
        self.audit("stop", "ok", client=client, target=status.spec.model_name if status.spec else "")
        return status

    def _stop(self, timeout: float) -> EngineStatus:
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

    def wait(
        self, timeout_s: float, *, on_poll: Callable[[EngineStatus], None] | None = None, poll_s: float = 0.02
    ) -> EngineStatus:
        """Poll fast until READY; raise EngineError (with the diagnosis) on failure or timeout.
        ``on_poll`` sees every status (the CLI records the run with it: it has no sampler)."""
        deadline = time.monotonic() + timeout_s
        while True:
            st = self.status(max_age_s=0)
            if on_poll is not None:
                on_poll(st)
            if st.state == EngineState.READY:
                return st
            failed = st.state == EngineState.FAILED and not st.restarting
            if failed or st.state == EngineState.STOPPED or time.monotonic() > deadline:
                why = (
                    f"engine {st.state.value}: {st.reason}".strip()
                    if failed or st.state == EngineState.STOPPED
                    else f"engine not READY after {timeout_s:.0f} s (state {st.state.value})"
                )
                d = self.diagnose(st)
                raise EngineError(why + (f"\n{d.text()}" if d else ""))
            time.sleep(poll_s)

    # -- several models behind one engine (router mode) --------------------------------------
    def models(self) -> list[ModelSlot]:
        """The models a multi-model engine serves, with their state; [] for one-model engines."""
        st = self.status()
        if st.state != EngineState.READY or st.spec is None or st.base_url is None:
            return []
        return flavors.get(st.spec.flavor).models(st.spec, st.base_url)

    def load_model(
        self, name: str, *, admit: Callable[[str, list[ModelSlot]], list[str]] | None = None, client: str = "panel"
    ) -> list[str]:
        """Load ``name`` into the running multi-model engine. ``admit`` (the panel's memory policy)
        returns the models to unload first, or raises to refuse; returns what was unloaded."""
        st = self.status(max_age_s=0)
        if st.state != EngineState.READY or st.spec is None or st.base_url is None:
            raise EngineNotRunning(f"no engine is READY (state {st.state.value})")
        flavor = flavors.get(st.spec.flavor)
        try:
            evict = admit(name, flavor.models(st.spec, st.base_url)) if admit else []
            for other in evict:
                flavor.unload_model(st.spec, st.base_url, other)
                self.audit("unload", "ok", client=client, target=other, detail=f"to make room for {name}")
            self._emit("load", st)  # a memory event like a start: the sampler goes fast
            flavor.load_model(st.spec, st.base_url, name)
        except EngineError as e:
            self.audit("load", "refused", client=client, target=name, detail=str(e)[:300])
            raise
        self.audit(
            "load", "ok", client=client, target=name, detail=f"unloaded first: {', '.join(evict)}" if evict else ""
        )
        return evict

    def unload_model(self, name: str, *, client: str = "panel") -> None:
        st = self.status(max_age_s=0)
        if st.state != EngineState.READY or st.spec is None or st.base_url is None:
            raise EngineNotRunning(f"no engine is READY (state {st.state.value})")
        flavors.get(st.spec.flavor).unload_model(st.spec, st.base_url, name)
        self.audit("unload", "ok", client=client, target=name)

    # -- explanation ------------------------------------------------------------------------
    def diagnose(self, status: EngineStatus | None = None) -> Diagnosis | None:
        st = status or self.status()
        if st.state not in (EngineState.FAILED, EngineState.UNHEALTHY) or self._diagnoser is None:
            return None
        version = self.version(st.spec) if st.spec is not None else ""
        return self._diagnoser(st, self.load_events(), version)

    def placement(self, status: EngineStatus | None = None) -> str | None:
        """Where the weights went, when it is not what the spec asked (READY engines only)."""
        from zoe_panel.engine.placement import placement_note

        st = status or self.status()
        if st.state != EngineState.READY or st.spec is None:
            return None
        key = (st.run_id, st.pid)
        cached = self._placement
        if cached is not None and cached[0] == key:
            return cached[1]
        note = placement_note(st.spec, self.load_events())
        self._placement = (key, note)
        return note

    def version(self, spec: EngineSpec) -> str:
        """'0.5.0-dev (build 1, 0c1e570), native-noamx (cpu)' for the program or image this spec runs on."""
        try:
            backend = self.backends.get(self.status().backend)
            return (backend.build_info() if backend else "") or flavors.get(spec.flavor).version(self.settings)
        except Exception:  # noqa: BLE001 - the version is information, not a requirement
            return ""

    def exports(self, spec: EngineSpec, *, image: str | None = None) -> dict[str, str]:
        """``spec`` as a native command line, a docker run line and a compose service."""
        from zoe_panel.engine.export import exports

        docker = self.docker
        return exports(self.settings, spec, docker.target(image or docker.image_ref(spec.flavor)))

    @property
    def docker(self) -> DockerEngine:
        """The Docker backend, for what only it has: images, pulls, GPU wiring."""
        from zoe_panel.engine.docker import DockerEngine

        backend = self.backends.get("docker")
        if not isinstance(backend, DockerEngine):
            raise EngineError("the Docker backend is not part of this panel")
        return backend
