"""Benchmark 4: sampler cost (CPU % of one core) and wall-clock jitter at 1, 10 and 20 Hz for each
telemetry source available here, idle and with both cores busy; baseline: a thread that only sleeps
on the same schedule."""

from __future__ import annotations

import multiprocessing
import time

import psutil
from common import Table, median, p90

from zoe_panel.telemetry.registry import FACTORIES
from zoe_panel.telemetry.ring import RingBuffer
from zoe_panel.telemetry.sampler import Sampler


def burn(stop: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    x = 0
    while not stop.is_set():
        x += 1


def cpu_pct(fn, seconds: float) -> float:  # type: ignore[no-untyped-def]
    me = psutil.Process()
    t0 = me.cpu_times()
    w0 = time.monotonic()
    fn(seconds)
    t1 = me.cpu_times()
    return 100.0 * ((t1.user - t0.user) + (t1.system - t0.system)) / (time.monotonic() - w0)


def sleeper(hz: float) -> callable:  # type: ignore[valid-type]
    def run(seconds: float) -> None:
        end = time.monotonic() + seconds
        nxt = time.monotonic()
        while time.monotonic() < end:
            nxt += 1 / hz
            time.sleep(max(0.0, nxt - time.monotonic()))

    return run


def one(source_name: str, hz: float, seconds: float) -> tuple[float, float, float, int, int]:
    ring = RingBuffer()
    src = FACTORIES[source_name]()
    sampler = Sampler(src, ring, hz=hz, hz_loading=hz)

    def run(secs: float) -> None:
        sampler.start()
        time.sleep(secs)
        sampler.stop()

    cpu = cpu_pct(run, seconds)
    ts = [s.t for s in ring.snapshot()]
    jitter = [abs((b - a) - 1 / hz) * 1000 for a, b in zip(ts, ts[1:], strict=False)]
    return cpu, median(jitter), p90(jitter), sampler.stats.missed, sampler.stats.samples


def main(smoke: bool = False) -> Table:
    seconds = 0.5 if smoke else 10.0
    sources = []
    for name, factory in FACTORIES.items():
        try:
            ok = factory().is_available()[0]
        except Exception:
            ok = False
        if ok:
            sources.append(name)
    t = Table(
        f"4. Sampler cost and jitter ({seconds:.0f} s per cell; sources available here: {', '.join(sources)})",
        [
            "source",
            "rate",
            "load",
            "CPU % of one core",
            "baseline CPU % (sleeping thread)",
            "ratio",
            "jitter median (ms)",
            "jitter p90 (ms)",
            "missed",
            "samples",
        ],
    )
    for load in ("idle", "2 cores busy"):
        stop = multiprocessing.Event()
        burners = [multiprocessing.Process(target=burn, args=(stop,)) for _ in range(2 if load != "idle" else 0)]
        for b in burners:
            b.start()
        try:
            for name in sources:
                for hz in (1.0, 10.0, 20.0):
                    base = cpu_pct(sleeper(hz), seconds)
                    cpu, jm, jp, missed, n = one(name, hz, seconds)
                    t.add(name, f"{hz:g} Hz", load, cpu, base, cpu / base if base > 0.01 else None, jm, jp, missed, n)
        finally:
            stop.set()
            for b in burners:
                b.join()
    t.notes.append(
        "CPU % counts the whole benchmark process while the sampler thread runs (psutil and "
        "/proc/meminfo reads); the baseline thread does nothing but keep the same schedule."
    )
    return t


if __name__ == "__main__":
    print(main().markdown())
