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
    """At most ``max_points`` samples, keeping in each bucket the one with the most memory used
    (RAM, then GPU), so an allocation spike survives (a plain stride would skip it)."""
    n = len(samples)
    if n <= max_points or max_points <= 0:
        return samples
    import numpy as np

    # one sort key per sample, compared with numpy per bucket (a Python max() per bucket cost
    # ~10 ms for an hour at 10 Hz, every second the Monitor redraws)
    ram = np.fromiter((s.ram_used_bytes for s in samples), np.float64, n)
    gpu = np.fromiter((s.gpu_mem_used_bytes or 0 for s in samples), np.float64, n)
    key = ram + gpu / (gpu.max() + 1.0)  # RAM first, GPU breaks ties
    edges = (np.arange(max_points + 1) * (n / max_points)).astype(np.int64)
    edges[-1] = n
    out = [samples[a + int(np.argmax(key[a:b])) if b > a else a] for a, b in zip(edges[:-1], edges[1:], strict=True)]
    if out[-1] is not samples[-1]:
        out[-1] = samples[-1]  # the live edge of the chart must be the newest sample
    return out
