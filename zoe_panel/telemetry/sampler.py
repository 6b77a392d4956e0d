"""One sampler thread per panel process; every tab reads its ring (the jtop service idea).

It runs fast (``hz_loading``) while the engine is STARTING, so the allocation spike during
model load and KV-cache allocation is visible, and slow otherwise. It never calls Streamlit,
survives any source error (kept in ``last_error``) and keeps going.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from zoe_panel.telemetry.base import Sample, TelemetrySource
from zoe_panel.telemetry.ring import RingBuffer

log = logging.getLogger(__name__)
CHILDREN_EVERY_S = 5.0  # how often an idle engine's child processes are looked for again


@dataclass
class SamplerStats:
    samples: int = 0
    errors: int = 0
    missed: int = 0  # ticks skipped because a sample took longer than the period
    last_error: str = ""
    last_error_at: float = 0.0


class Sampler:
    def __init__(
        self,
        source: TelemetrySource,
        ring: RingBuffer,
        *,
        hz: float = 1.0,
        hz_loading: float = 10.0,
        is_loading: Callable[[], bool] = lambda: False,
        engine_pid: Callable[[], int | None] = lambda: None,
    ) -> None:
        self.source = source
        self.ring = ring
        self.hz = hz
        self.hz_loading = hz_loading
        self.is_loading = is_loading
        self.engine_pid = engine_pid
        self.stats = SamplerStats()
        self._listeners: list[Callable[[Sample], None]] = []
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._fast_until = 0.0
        self._proc: psutil.Process | None = None
        self._children: list[psutil.Process] = []
        self._children_at = -1e9

    def add_listener(self, fn: Callable[[Sample], None]) -> None:
        self._listeners.append(fn)

    def boost(self, seconds: float = 30.0) -> None:
        """Sample fast now (an engine is being started), without waiting for the next slow tick."""
        self._fast_until = time.monotonic() + seconds
        self._wake.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="zoe-sampler", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout_s)
        self.source.close()

    def current_hz(self) -> float:
        fast = time.monotonic() < self._fast_until
        if not fast:
            try:
                fast = self.is_loading()
            except Exception:  # noqa: BLE001 - a status probe failure must not stop sampling
                fast = False
        return self.hz_loading if fast else self.hz

    def sample_once(self) -> Sample | None:
        try:
            sample = self.source.sample()
            sample = self._add_engine(sample)
        except Exception as e:  # noqa: BLE001 - sources fail in many ways; record and keep going
            self.stats.errors += 1
            self.stats.last_error = f"{type(e).__name__}: {e}"
            self.stats.last_error_at = time.time()
            return None
        self.ring.append(sample)
        self.stats.samples += 1
        for fn in self._listeners:
            try:
                fn(sample)
            except Exception:
                log.exception("sample listener failed")
        return sample

    def _add_engine(self, sample: Sample) -> Sample:
        pid = self.engine_pid()
        if not pid:
            self._proc = None
            return sample
        try:
            if self._proc is None or self._proc.pid != pid:
                self._proc = psutil.Process(pid)
                self._children_at = -1e9
            # Finding children reads /proc/*/stat of every process (~2.4 ms here, more on a busy
            # board): at most every CHILDREN_EVERY_S, and each sample while fast (an engine loading).
            now = time.monotonic()
            if self._children_at + CHILDREN_EVERY_S <= now or self.current_hz() > self.hz:
                self._children = self._proc.children(recursive=True)
                self._children_at = now
            rss = int(self._proc.memory_info().rss) + children_rss(self._children)
        except psutil.Error:
            self._proc = None
            return sample
        return sample.with_engine(rss, self.source.engine_gpu_bytes(pid))

    def _loop(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.sample_once()
            period = 1.0 / self.current_hz()
            next_at += period
            now = time.monotonic()
            if next_at < now:
                skipped = int((now - next_at) / period) + 1
                self.stats.missed += skipped
                next_at += skipped * period
            self._wake.clear()
            if self._wake.wait(max(0.0, next_at - time.monotonic())):
                next_at = time.monotonic()


def tree_rss(proc: psutil.Process) -> int:
    """RSS of a process and its children: a router's models run in child processes of the engine."""
    return int(proc.memory_info().rss) + children_rss(proc.children(recursive=True))


def children_rss(children: list[psutil.Process]) -> int:
    rss = 0
    for child in children:
        try:
            rss += int(child.memory_info().rss)
        except psutil.Error:
            pass  # gone since it was found: nothing to count
    return rss


def process_tree_rss(pid: int) -> int | None:
    try:
        return tree_rss(psutil.Process(pid))
    except psutil.Error:
        return None
