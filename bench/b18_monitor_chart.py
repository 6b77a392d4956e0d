"""Benchmark 18: building the Monitor's memory chart from one hour of history, as every open Monitor
tab does each second: the previous builder (Python lists validated element by element, shapes
added one by one, a Python max per downsampling bucket; kept here as the baseline) against the
current one (numpy columns, shapes set at once, numpy per bucket). Goal: ≤ 30 ms."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from datetime import datetime

import plotly.graph_objects as go
from common import Table

from zoe_panel.telemetry.base import Sample
from zoe_panel.telemetry.ring import downsample
from zoe_panel.ui.charts import Marker, memory_figure
from zoe_panel.ui.monitor_view import MAX_POINTS

GIB = 1024**3


def before_downsample(samples: list[Sample], max_points: int) -> list[Sample]:
    if len(samples) <= max_points:
        return samples
    step = len(samples) / max_points
    out = []
    for i in range(max_points):
        bucket = samples[int(i * step) : int((i + 1) * step)] or [samples[int(i * step)]]
        out.append(max(bucket, key=lambda s: (s.ram_used_bytes, s.gpu_mem_used_bytes or 0)))
    out[-1] = samples[-1]
    return out


def before_figure(samples: Sequence[Sample], markers: Sequence[Marker], predicted: int) -> go.Figure:
    fig = go.Figure()
    x = [datetime.fromtimestamp(s.t) for s in samples]
    for name, vals in (
        ("RAM used", [s.ram_used_bytes / GIB for s in samples]),
        ("RAM available", [s.ram_available_bytes / GIB for s in samples]),
        ("page cache", [s.ram_cached_bytes / GIB for s in samples]),
        ("engine RSS", [s.engine_rss_bytes / GIB if s.engine_rss_bytes else None for s in samples]),
    ):
        fig.add_trace(go.Scattergl(x=x, y=vals, name=name, mode="lines"))
    fig.add_trace(go.Scattergl(x=x, y=[s.cpu_pct for s in samples], name="CPU %", yaxis="y2", mode="lines"))
    fig.add_hline(y=predicted / GIB, line_dash="dash", annotation_text="predicted")
    xs = [datetime.fromtimestamp(m.t) for m in markers]
    for mx in xs:
        fig.add_shape(type="line", x0=mx, x1=mx, y0=0, y1=1, yref="paper", line={"width": 1, "dash": "dot"})
    fig.add_trace(go.Scatter(x=xs, y=[1.0] * len(xs), mode="markers+text", text=[m.label for m in markers]))
    fig.update_layout(height=420, yaxis2={"overlaying": "y", "side": "right", "range": [0, 100]}, uirevision="m")
    return fig


def history(hz: float, now: float) -> list[Sample]:
    n = int(3600 * hz)
    return [
        Sample(
            now - 3600 + i / hz,
            "host",
            24 << 30,
            (8 << 30) + (i % 977) * 4096,
            (16 << 30) - (i % 977) * 4096,
            2 << 30,
            cpu_pct=float(i % 100),
            engine_rss_bytes=(1 << 30) + (i % 331) * 4096,
        )  # fmt: skip
        for i in range(n)
    ]


def timed(fn, reps: int) -> float:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return statistics.median(out)


def main(smoke: bool = False) -> Table:
    t = Table(
        "18. Monitor chart build from one hour of history (median ms; goal ≤ 30)",
        ["history", "before ms", "now ms", "ratio now / before"],
    )
    reps = 3 if smoke else 25
    now = time.time()
    markers = [Marker(now - 1800 + 20 * i, f"phase {i}") for i in range(8)]
    for hz in (1.0, 10.0):
        samples = history(hz, now)

        def old(samples: list[Sample] = samples) -> None:
            before_figure(before_downsample(samples, MAX_POINTS), markers, 3 << 30)

        def new(samples: list[Sample] = samples) -> None:
            memory_figure(downsample(samples, MAX_POINTS), markers=markers, predicted_total_bytes=3 << 30)

        before, after = timed(old, reps), timed(new, reps)
        t.add(f"1 h at {hz:g} Hz ({len(samples)} samples, {MAX_POINTS} drawn)", round(before, 1), round(after, 1),
              round(after / before, 3))  # fmt: skip
    t.notes.append("Baseline: the builder as it was before this change, kept in this file. One sampler feeds all tabs.")
    return t


if __name__ == "__main__":
    print(main().markdown())
