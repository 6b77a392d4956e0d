"""RunRecorder: turns engine status + telemetry samples into History rows.

Fed by the panel's sampler thread (every sample) and by the CLI's ``start --wait`` loop, so a
run is recorded whoever started it. It notes the memory baseline before the load, the peaks
during the load (system RAM used, engine RSS, GPU memory), the load events from the log, the
time to READY, and the outcome with its diagnosis.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from zoe_panel.engine.base import EngineSpec, EngineState, EngineStatus
from zoe_panel.engine.loadlog import LoadEvent, load_progress, parse_lines
from zoe_panel.engine.logfile import parse_stamped
from zoe_panel.history import History
from zoe_panel.telemetry.base import Sample

log = logging.getLogger(__name__)
SETTLE_S = 10.0  # keep tracking peaks this long after READY: first requests allocate too
FLUSH_S = 5.0
IDLE_STORE_S = 10.0


@dataclass
class _Run:
    run_id: str
    state: EngineState
    started_at: float
    baseline: Sample | None
    last_log_t: float = 0.0
    seen_texts: set[str] = field(default_factory=set)
    ready_at: float | None = None
    ended: bool = False
    events: list[LoadEvent] = field(default_factory=list)
    ready_rss: int | None = None
    after_peak: int = 0
    pid: int | None = None
    model_path: str = ""
    pending_cache: str = ""  # the KV cache the log announced last, for its size line


class RunRecorder:
    def __init__(
        self,
        history: History,
        *,
        logs: Callable[[int], list[str]],
        keep_days: float = 30.0,
        describe: Callable[[EngineSpec], dict[str, object]] = lambda spec: {},
        diagnose: Callable[[EngineStatus, list[LoadEvent]], str] = lambda st, ev: "",
    ) -> None:
        self.history = history
        self.logs = logs
        self.describe = describe
        self.diagnose = diagnose
        self._run: _Run | None = None
        self._lock = threading.Lock()
        self._pending: list[tuple[Sample, str | None]] = []
        self._last_flush = time.monotonic()
        self._last_prune = time.monotonic()
        self._last_stored_t = 0.0
        self.keep_days = keep_days
        self.latest: Sample | None = None

    def ready_rss(self) -> int | None:
        """The current run's RSS at READY (None before READY or without a run)."""
        run = self._run
        return run.ready_rss if run is not None and not run.ended else None

    @property
    def current_events(self) -> list[LoadEvent]:
        run = self._run
        return list(run.events) if run else []

    def observe(self, status: EngineStatus, sample: Sample | None = None) -> None:
        with self._lock:
            try:
                self._observe(status, sample)
            except Exception:  # recording must never break sampling or a page
                log.exception("run recorder failed")

    def _observe(self, status: EngineStatus, sample: Sample | None) -> None:
        if sample is not None:
            self.latest = sample
        run = self._run
        if status.run_id and (run is None or run.run_id != status.run_id):
            run = self._begin(status, sample)
        loading = (
            run is not None
            and not run.ended
            and (
                status.state == EngineState.STARTING
                or (run.ready_at is not None and time.time() - run.ready_at < SETTLE_S)
            )
        )
        if run is not None and not run.ended:
            self._harvest_log(run)
            if status.pid:
                run.pid = status.pid
            if sample is not None and status.state == EngineState.STARTING:
                self._peaks(run, sample)
            self._transition(run, status, sample)
            if sample is not None and status.state == EngineState.READY and run.ready_at is not None:
                self._after_ready(run, sample)
        if sample is not None and (loading or sample.t - self._last_stored_t >= IDLE_STORE_S):
            # every sample of a load; one every IDLE_STORE_S otherwise (weeks of 1 Hz would be GBs)
            self._last_stored_t = sample.t
            self._pending.append((sample, run.run_id if run is not None and loading else None))
            if time.monotonic() - self._last_flush > FLUSH_S or loading:
                self.flush()

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        self._last_flush = time.monotonic()
        by_run: dict[str | None, list[Sample]] = {}
        for s, rid in pending:
            by_run.setdefault(rid, []).append(s)
        for rid, samples in by_run.items():
            self.history.add_samples(samples, rid)
        if time.monotonic() - self._last_prune > 3600:
            self._last_prune = time.monotonic()
            self.history.prune(self.keep_days)

    def _begin(self, status: EngineStatus, sample: Sample | None) -> _Run:
        baseline = sample or self.latest
        existing = self.history.run(status.run_id or "")
        run = _Run(status.run_id or "", status.state, status.started_at or time.time(), baseline)
        if existing is not None:
            # Seen before (by another panel or CLI process): carry on where it left off.
            run.last_log_t = self.history.last_event_t(run.run_id)
            run.events = self.history.events(run.run_id)
            run.ready_at = existing.ready_at
            run.ended = existing.outcome in ("failed", "stopped")
        fields: dict[str, object] = {"started_at": run.started_at, "backend": status.backend}
        if status.spec is not None:
            run.model_path = status.spec.model
        if existing is not None:
            run.ready_rss = existing.ready_rss_bytes
            run.after_peak = existing.peak_after_ready_rss_bytes or 0
        if status.spec is not None and existing is None:
            fields.update(model=status.spec.model_name, model_path=status.spec.model, flavor=status.spec.flavor)
            fields.update(self.describe(status.spec))
        if baseline is not None and (existing is None or existing.baseline_ram_used_bytes is None):
            fields["baseline_ram_used_bytes"] = baseline.ram_used_bytes
            if baseline.gpu_mem_used_bytes is not None:
                fields["baseline_gpu_bytes"] = baseline.gpu_mem_used_bytes
        self.history.upsert_run(run.run_id, **fields)
        self._run = run
        return run

    def _harvest_log(self, run: _Run) -> None:
        lines = [parse_stamped(x) for x in self.logs(400)]
        fresh = [
            (ln.t, ln.text)
            for ln in lines
            if ln.t > run.last_log_t or (ln.t == run.last_log_t and ln.text not in run.seen_texts)
        ]
        if not fresh:
            return
        run.last_log_t = fresh[-1][0]
        run.seen_texts = {text for t, text in fresh if t == run.last_log_t}
        events = self._name_caches(run, [e for e in parse_lines(fresh) if e.t >= run.started_at - 1])
        if events:
            run.events.extend(events)
            self.history.add_events(run.run_id, events)

    @staticmethod
    def _name_caches(run: _Run, events: list[LoadEvent]) -> list[LoadEvent]:
        """Name each KV cache after the "creating SWA KV cache" line before it, also when that
        line came in the previous harvest of the log."""
        out = []
        for e in events:
            if e.phase == "kv_layout":
                run.pending_cache = str(e.detail.get("cache") or "")
            elif e.phase == "kv_cache":
                if not e.detail.get("cache") and run.pending_cache:
                    e = LoadEvent(e.t, e.phase, e.text, e.bytes, e.device, {**e.detail, "cache": run.pending_cache})
                run.pending_cache = ""
            out.append(e)
        return out

    def _peaks(self, run: _Run, s: Sample) -> None:
        gpu = None
        if s.gpu_mem_used_bytes is not None:
            base = run.baseline.gpu_mem_used_bytes if run.baseline and run.baseline.gpu_mem_used_bytes else 0
            gpu = max(0, s.gpu_mem_used_bytes - base)
        if s.engine_gpu_bytes is not None:
            gpu = max(gpu or 0, s.engine_gpu_bytes)
        fields: dict[str, object] = {"peak_ram_used_bytes": s.ram_used_bytes}
        if s.engine_rss_bytes is not None:
            fields["peak_engine_rss_bytes"] = s.engine_rss_bytes
        if gpu is not None:
            fields["peak_gpu_bytes"] = gpu
        self.history.upsert_run(run.run_id, **fields)

    def _after_ready(self, run: _Run, s: Sample) -> None:
        """The engine's growth while it serves: RSS above its READY level (prompt cache,
        checkpoints, compute pages), written when it rises by a MiB or more."""
        if s.engine_rss_bytes is None:
            return
        if run.ready_rss is None:
            run.ready_rss = s.engine_rss_bytes
            self.history.upsert_run(run.run_id, ready_rss_bytes=s.engine_rss_bytes)
        if s.engine_rss_bytes > run.after_peak + (1 << 20):
            run.after_peak = s.engine_rss_bytes
            self.history.upsert_run(run.run_id, peak_after_ready_rss_bytes=s.engine_rss_bytes)

    def _transition(self, run: _Run, status: EngineStatus, sample: Sample | None = None) -> None:
        state = status.state
        if state == run.state and state != EngineState.READY:
            return
        if state == EngineState.READY and run.ready_at is None:
            run.ready_at = time.time()
            fields: dict[str, object] = {
                "outcome": "ready",
                "ready_at": run.ready_at,
                "time_to_ready_s": run.ready_at - run.started_at,
                "restarts": status.restarts,
            }
            if sample is not None:
                # the READY sample counts toward the load's peak (warm-up has run by now)
                self._peaks(run, sample)
            binary = binary_rss(run.pid, run.model_path) if run.pid else None
            if binary:
                fields["binary_rss_bytes"] = binary
            self.history.upsert_run(run.run_id, **fields)
        elif state == EngineState.STARTING and run.state in (EngineState.FAILED, EngineState.READY):
            run.ready_at = None  # a supervisor restart: track the new load
            self.history.upsert_run(run.run_id, outcome="running", restarts=status.restarts)
        elif state == EngineState.FAILED and run.state != EngineState.FAILED:
            self._harvest_log(run)
            restarting = status.restarting
            failed_load = run.ready_at is None
            stored = self.history.run(run.run_id)
            progress = (
                load_progress(run.events, stored.predicted_at_ready_bytes if stored else None) if failed_load else {}
            )
            self.history.upsert_run(
                run.run_id,
                outcome="running" if restarting else "failed",
                reason=status.reason,
                exit_code=status.exit_code,
                restarts=status.restarts,
                ended_at=None if restarting else time.time(),
                diagnosis=self.diagnose(status, run.events),
                load_progress_json=json.dumps(progress) if progress else None,
            )
            run.ended = not restarting
        elif state == EngineState.STOPPED:
            self.history.upsert_run(
                run.run_id, outcome="stopped" if run.state != EngineState.FAILED else "failed", ended_at=time.time()
            )
            run.ended = True
        run.state = state


def binary_rss(pid: int, model_path: str = "") -> int | None:
    """Resident pages of the engine's binary and shared libraries: file-backed mappings other
    than the model (and device files). The estimate's process overhead, measured."""
    import psutil

    try:
        maps = psutil.Process(pid).memory_maps(grouped=True)
    except (psutil.Error, OSError):
        return None
    total = 0
    for m in maps:
        path = m.path
        if not path.startswith("/") or path.startswith("/dev/") or path.endswith(".gguf") or path == model_path:
            continue
        total += int(m.rss)
    return total or None
