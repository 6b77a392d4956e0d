"""Trial load: start a spec, wait for READY (or failure), read what llama.cpp reported, stop.

Used by the KV test matrix, the estimator benchmark and the H100 script: the same engine code
the panel uses, so what they prove is what the panel does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import psutil

from zoe_panel.engine.base import EngineSpec, EngineState
from zoe_panel.engine.loadlog import MIB, LoadEvent, load_summary
from zoe_panel.errors import EngineError
from zoe_panel.models.fit import Estimate
from zoe_panel.runtime import Runtime


@dataclass
class TrialResult:
    spec: EngineSpec
    estimate: Estimate
    ready: bool
    seconds: float
    events: list[LoadEvent] = field(default_factory=list)
    peak_rss_bytes: int = 0
    error: str = ""

    def reported(self) -> dict[str, int]:
        return load_summary(self.events)

    def kv_events(self) -> list[LoadEvent]:
        return [e for e in self.events if e.phase == "kv_cache"]

    def kv_equal(self) -> bool:
        """Every cache llama.cpp reported has our cells and our size, at its print resolution (0.01 MiB).

        Per cache, never summed: the sum of llama.cpp's rounded prints can differ from ours rounded.
        """
        reported, predicted = self.kv_events(), self.estimate.kv
        return len(reported) == len(predicted) and all(
            ev.detail.get("cells") == c.cells and round((ev.bytes or 0) / MIB, 2) == round(c.bytes / MIB, 2)
            for ev, c in zip(reported, predicted, strict=True)
        )

    def fit_projection_bytes(self) -> int | None:
        proj = [e.bytes for e in self.events if e.phase == "fit_projection" and e.bytes]
        return max(proj) if proj else None


def trial_run(rt: Runtime, spec: EngineSpec, *, timeout_s: float = 120.0, settle_s: float = 0.0) -> TrialResult:
    from zoe_panel.telemetry.host import HostSource

    host = HostSource()
    est = rt.memory.estimate(spec, calibrated=False)
    t0 = time.monotonic()
    rt.engine.start(spec, client="trial")
    ready, error, peak = False, "", 0
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            st = rt.engine.status(max_age_s=0)
            pid = rt.engine.engine_pid()
            rss = None
            if pid:
                try:
                    rss = psutil.Process(pid).memory_info().rss
                    peak = max(peak, rss)
                except psutil.Error:
                    pass
            # History records the trial as it records any run (peaks, READY level, the binary's pages)
            rt.recorder.observe(st, host.sample().with_engine(rss))
            if st.state == EngineState.READY:
                ready = True
                break
            if st.state in (EngineState.FAILED, EngineState.STOPPED):
                error = st.reason
                break
            time.sleep(0.05)
        seconds = time.monotonic() - t0
        end = time.monotonic() + settle_s
        while ready and time.monotonic() < end:
            pid = rt.engine.engine_pid()
            if pid:
                peak = max(peak, psutil.Process(pid).memory_info().rss)
            time.sleep(0.05)
        events = rt.engine.load_events(2000)
    finally:
        try:
            rt.engine.stop(timeout_s=10, client="trial")
        except EngineError:
            pass
    return TrialResult(spec, est, ready, seconds, events, peak, error)
