"""A thread-safe, time-bounded ring of samples, and chart-friendly downsampling."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable

from zoe_panel.telemetry.base import Sample


class RingBuffer:
    def __init__(self, seconds: float = 3600.0, max_items: int = 80_000) -> None:
        self.seconds = seconds
        self._items: deque[Sample] = deque(maxlen=max_items)
        self._lock = threading.Lock()

    def append(self, sample: Sample) -> None:
        with self._lock:
            self._items.append(sample)
            horizon = sample.t - self.seconds
            while self._items and self._items[0].t < horizon:
                self._items.popleft()

    def extend(self, samples: Iterable[Sample]) -> None:
        for s in samples:
            self.append(s)

    def snapshot(self, since: float | None = None) -> list[Sample]:
        with self._lock:
            items = list(self._items)
        if since is None:
            return items
        # samples are appended in time order: bisect instead of scanning an hour of them
        lo, hi = 0, len(items)
        while lo < hi:
            mid = (lo + hi) // 2
            if items[mid].t < since:
                lo = mid + 1
            else:
                hi = mid
        return items[lo:]

    def latest(self) -> Sample | None:
        with self._lock:
            return self._items[-1] if self._items else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


def downsample(samples: list[Sample], max_points: int) -> list[Sample]:
    """At most ``max_points`` samples, keeping in each bucket the one with the most RAM used,
    so an allocation spike survives (a plain stride would skip it)."""
    if len(samples) <= max_points or max_points <= 0:
        return samples
    step = len(samples) / max_points
    out = []
    for i in range(max_points):
        bucket = samples[int(i * step) : int((i + 1) * step)] or [samples[int(i * step)]]
        out.append(max(bucket, key=lambda s: (s.ram_used_bytes, s.gpu_mem_used_bytes or 0)))
    if out[-1] is not samples[-1]:
        out[-1] = samples[-1]  # the live edge of the chart must be the newest sample
    return out
