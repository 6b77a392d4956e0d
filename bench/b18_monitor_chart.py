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
from common import ROOT, Table
from plotly.subplots import make_subplots

from zoe_panel.engine.loadlog import LoadEvent, parse_lines
from zoe_panel.telemetry.base import Sample
from zoe_panel.telemetry.ring import downsample
from zoe_panel.ui.charts import Marker, memory_figure
from zoe_panel.ui.loadview import (
    AFTER_S,
    BAND_COLORS,
    MIB,
    Band,
    PredictedPart,
    bands,
    label_rows,
    load_figure,
    with_gaps,
)
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


# -- the load view as it was built before (make_subplots, add_vrect / add_hline one by one) ---------
def before_load_figure(
    samples: Sequence[Sample],
    events: Sequence[LoadEvent],
    *,
    started_at: float,
    ended_at: float | None,
    failed: bool = False,
    predicted: Sequence[PredictedPart] = (),
    baseline_ram_used: int | None = None,
    height: int = 460,
) -> go.Figure:
    end = (ended_at if ended_at is not None else (samples[-1].t if samples else started_at)) + AFTER_S
    shown = [s for s in samples if started_at - 1.0 <= s.t <= end]
    points = with_gaps(shown)
    x = [None if s is None else round(s.t - started_at, 3) for s in points]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.78, 0.22], vertical_spacing=0.04)

    def line(name: str, values: list[float | None], row: int = 1, **kw: object) -> None:
        if any(v is not None for v in values):
            fig.add_trace(go.Scatter(x=x, y=values, name=name, mode="lines", connectgaps=False, **kw), row=row, col=1)

    line(
        "engine memory (RSS)",
        [None if s is None or s.engine_rss_bytes is None else s.engine_rss_bytes / MIB for s in points],
        line={"width": 2.5, "color": "#1f77b4"},
    )
    base = baseline_ram_used if baseline_ram_used is not None else (shown[0].ram_used_bytes if shown else 0)
    line(
        "RAM in use above the start (whole system)",
        [None if s is None else (s.ram_used_bytes - base) / MIB for s in points],
        line={"width": 1, "dash": "dot", "color": "rgba(127,127,127,0.6)"},
    )
    line(
        "GPU memory",
        [None if s is None or s.gpu_mem_used_bytes is None else s.gpu_mem_used_bytes / MIB for s in points],
        line={"width": 2, "color": "#d62728"},
    )
    line(
        "CPU %",
        [None if s is None else s.cpu_pct for s in points],
        row=2,
        line={"width": 1, "color": "rgba(100,100,100,0.8)"},
    )
    _before_bands(fig, bands(events, started_at, ended_at, failed), end - started_at + 0.5)
    measured_top = max(
        [v for s in shown for v in (s.engine_rss_bytes or 0, s.gpu_mem_used_bytes or 0, s.ram_used_bytes - base)] or [0]
    )
    _before_predicted(fig, predicted, measured_top / MIB)
    fig.update_layout(
        height=height,
        margin={"l": 50, "r": 20, "t": 30, "b": 40},
        legend={"orientation": "h", "y": -0.12},
        hovermode="x unified",
        uirevision="load",
    )
    fig.update_yaxes(title_text="MiB", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="CPU %", range=[0, 105], row=2, col=1)
    fig.update_xaxes(title_text="seconds since Start", range=[-0.5, end - started_at], row=2, col=1)
    return fig


def _before_bands(fig: go.Figure, phases: Sequence[Band], span_s: float) -> None:
    for b, row in zip(phases, label_rows(phases, span_s), strict=True):
        fig.add_vrect(
            x0=b.start, x1=max(b.end, b.start + 0.02), fillcolor=BAND_COLORS[b.kind], line_width=0, row=1, col=1
        )
        fig.add_annotation(
            x=(b.start + b.end) / 2,
            y=1.0 - 0.075 * row,
            yref="y domain",
            text=b.label,
            showarrow=False,
            font={"size": 11, "color": "#c00000" if b.kind == "FAILED" else "#333"},
            bgcolor="rgba(255,255,255,0.75)",
            row=1,
            col=1,
        )


def _before_predicted(fig: go.Figure, parts: Sequence[PredictedPart], measured_top: float) -> None:
    """Cumulative predicted levels: each line is 'everything up to this part'. A level far above
    what the load reached (a multi-GiB prompt cache cap) would flatten the chart: it is written at
    the top instead of drawn."""
    level = 0
    shown_top = measured_top
    for i, part in enumerate(parts):
        level += part.bytes
        last = i == len(parts) - 1
        if i and level / MIB > 1.6 * max(shown_top, 1.0):
            fig.add_annotation(
                x=1.0,
                xref="x domain",
                y=1.0,
                yref="y domain",
                xanchor="right",
                yanchor="bottom",
                text=f"+ {part.label}: {level / MIB:.0f} MiB (above the scale)",
                showarrow=False,
                font={"size": 10, "color": "#b35900"},
                row=1,
                col=1,
            )
            continue
        shown_top = max(shown_top, level / MIB)
        fig.add_hline(
            y=level / MIB,
            line={"dash": "dot" if last else "dash", "width": 1, "color": "orange"},
            annotation_text=f"{'+ ' if i else ''}{part.label}: {level / MIB:.0f} MiB",
            annotation_position="top left",
            annotation_font={"size": 10, "color": "#b35900"},
            row=1,
            col=1,
        )


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
    # the load view, redrawn each second while an engine loads: a real llama-server log's phases
    lines = (ROOT / "tests/data/logs/llama-server-0c1e570-gemma3-swa.log").read_text().splitlines()
    events = parse_lines((100.0 + i / 10, line) for i, line in enumerate(lines))
    load = [Sample(100.0 + i / 10, "host", 16 << 30, (4 << 30) + i * (1 << 20), 12 << 30, 0, cpu_pct=50.0)
            .with_engine((100 << 20) + i * (1 << 20)) for i in range(600)]  # fmt: skip
    levels = [PredictedPart("weights", 200 << 20), PredictedPart("KV cache", 300 << 20),
              PredictedPart("the rest = at READY", 50 << 20), PredictedPart("total", 9 << 30)]  # fmt: skip
    kw = {"started_at": 100.0, "ended_at": 104.0, "predicted": levels}
    before = timed(lambda: before_load_figure(load, events, **kw), reps)  # type: ignore[arg-type]
    after = timed(lambda: load_figure(load, events, **kw), reps)  # type: ignore[arg-type]
    t.add(f"load view (60 s at 10 Hz, {len(bands(events, 100.0, 104.0, False))} phases, 4 levels)",
          round(before, 1), round(after, 1), round(after / before, 3))  # fmt: skip
    t.notes.append(
        "Baseline: the builders as they were before (lists validated element by element, shapes added one by "
        "one), kept in this file; now: numpy columns and plain dicts, without plotly's per-property validation "
        "(the unit tests validate what the builders make). One sampler feeds all tabs."
    )
    return t


if __name__ == "__main__":
    print(main().markdown())
