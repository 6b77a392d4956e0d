"""The load view: one engine start, from Start to READY (or FAILED) and a few seconds after,
drawn so that people can read it. Pure plotly (no Streamlit): Monitor shows it while an engine
starts, History for any recorded run.

What it shows:
* seconds since Start on the x axis, zoomed to the load;
* the engine's memory (RSS of its process tree), system RAM in use above the baseline, and GPU
  memory, from the 10 Hz samples; a gap in the samples stays a gap (no straight line across it);
* the load phases as bands (weights, each KV cache, compute, warm-up, then READY or FAILED),
  labelled in the band, on staggered rows so that neighbours never overlap;
* the predicted parts stacked as reference lines (weights, + KV, + compute and the rest = at READY,
  + what grows after READY), so the measured line can be read against each part;
* CPU % on its own small axis below.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go

from zoe_panel.engine.loadlog import LoadEvent
from zoe_panel.history import History, Run
from zoe_panel.telemetry.base import Sample
from zoe_panel.ui.charts import unvalidated_figure

MIB = 1024 * 1024
AFTER_S = 3.0  # seconds shown after READY / FAILED
BAND_COLORS = {
    "weights": "rgba(31,119,180,0.14)",
    "KV cache": "rgba(255,127,14,0.16)",
    "compute": "rgba(44,160,44,0.14)",
    "warm-up": "rgba(148,103,189,0.12)",
    "READY": "rgba(0,160,0,0.10)",
    "FAILED": "rgba(220,0,0,0.14)",
}


@dataclass(frozen=True)
class Band:
    start: float  # seconds since Start
    end: float
    label: str
    kind: str  # a key of BAND_COLORS


@dataclass(frozen=True)
class PredictedPart:
    label: str
    bytes: int


def bands(events: Sequence[LoadEvent], started_at: float, ended_at: float | None, failed: bool) -> list[Band]:
    """The phases between Start and the end of the load, from the parsed log events.

    llama.cpp prints each size after the allocation, so a phase runs from the previous line that
    closed one up to its own line: the weights load until the context starts (its output buffer or
    first KV line), each KV cache until its size line, the compute buffer until its line, the
    warm-up until "model loaded" / "listening"."""
    out: list[Band] = []
    t = 0.0

    def close(at: float, label: str, kind: str) -> None:
        nonlocal t
        out.append(Band(t, max(t, at), label, kind))
        t = max(t, at)

    for e in sorted(events, key=lambda e: e.t):
        at = max(0.0, e.t - started_at)
        kinds = {b.kind for b in out}
        if e.is_failure:
            attempted = next(
                (
                    label
                    for kind, label in (("weights", "weights"), ("KV cache", "KV cache"), ("compute", "compute"))
                    if kind not in kinds
                ),
                "warm-up",
            )
            close(at, f"{attempted}: failed", "FAILED")
            break
        if e.phase in ("output_buffer", "kv_layout", "kv_cache", "recurrent") and "weights" not in kinds:
            close(at, "weights", "weights")
        if e.phase == "kv_cache":
            name = e.detail.get("cache") or ""
            close(at, f"KV cache ({name})" if name else "KV cache", "KV cache")
        elif e.phase == "recurrent":
            close(at, "recurrent state", "KV cache")
        elif e.phase == "compute_buffer" and "compute" not in kinds:
            close(at, "compute", "compute")
        elif e.phase in ("loaded", "listening") and "warm-up" not in kinds and out:
            close(at, "warm-up", "warm-up")
    if ended_at is not None:
        end = max(t, ended_at - started_at)
        kind = "FAILED" if failed else "READY"
        out.append(Band(end, end + AFTER_S, kind, kind))
    return out


def with_gaps(samples: Sequence[Sample]) -> list[Sample | None]:
    """Samples with None where the sampling stopped for a while (three median intervals or more),
    so a line is broken there instead of joining distant points with a straight segment."""
    if len(samples) < 3:
        return list(samples)
    steps = [b.t - a.t for a, b in zip(samples, samples[1:], strict=False)]
    limit = 3 * max(statistics.median(steps), 0.05)
    out: list[Sample | None] = [samples[0]]
    for prev, cur in zip(samples, samples[1:], strict=False):
        if cur.t - prev.t > limit:
            out.append(None)
        out.append(cur)
    return out


def load_figure(
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
    """Memory (top, 78 %) and CPU (bottom) against seconds since Start, with the load's phases as
    bands and the predicted levels as lines. Built as one layout: added one at a time (add_vrect,
    add_hline), plotly re-validated every shape on each call: 415 ms a figure on 2 cores, redrawn each
    second by the Monitor while an engine loads."""
    end = (ended_at if ended_at is not None else (samples[-1].t if samples else started_at)) + AFTER_S
    shown = [s for s in samples if started_at - 1.0 <= s.t <= end]
    points = with_gaps(shown)
    x = [None if s is None else round(s.t - started_at, 3) for s in points]
    traces: list[dict[str, object]] = []

    def line(name: str, values: list[float | None], row: int = 1, **kw: object) -> None:
        if any(v is not None for v in values):
            axes = {"xaxis": "x", "yaxis": "y"} if row == 1 else {"xaxis": "x2", "yaxis": "y2"}
            traces.append(
                {
                    "type": "scatter",
                    "x": x,
                    "y": values,
                    "name": name,
                    "mode": "lines",
                    "connectgaps": False,
                    **axes,
                    **kw,
                }
            )

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
    shapes, notes = _bands(bands(events, started_at, ended_at, failed), end - started_at + 0.5)
    measured_top = max(
        [v for s in shown for v in (s.engine_rss_bytes or 0, s.gpu_mem_used_bytes or 0, s.ram_used_bytes - base)] or [0]
    )
    more_shapes, more_notes = _predicted(predicted, measured_top / MIB)
    # two rows sharing x, as make_subplots(rows=2, shared_xaxes=True, row_heights=[0.78, 0.22],
    # vertical_spacing=0.04) lays them out
    layout = {
        "height": height,
        "margin": {"l": 50, "r": 20, "t": 30, "b": 40},
        "legend": {"orientation": "h", "y": -0.12},
        "hovermode": "x unified",
        "uirevision": "load",
        "xaxis": {"anchor": "y", "domain": [0.0, 1.0], "matches": "x2", "showticklabels": False},
        "xaxis2": {"anchor": "y2", "domain": [0.0, 1.0], "title": {"text": "seconds since Start"},
                   "range": [-0.5, end - started_at]},
        "yaxis": {"anchor": "x", "domain": [0.2512, 1.0], "title": {"text": "MiB"}, "rangemode": "tozero"},
        "yaxis2": {"anchor": "x2", "domain": [0.0, 0.2112], "title": {"text": "CPU %"}, "range": [0, 105]},
        "shapes": shapes + more_shapes,
        "annotations": notes + more_notes,
    }  # fmt: skip
    return unvalidated_figure(traces, layout)


def label_rows(phases: Sequence[Band], span_s: float, width_px: float = 820.0, rows: int = 4) -> list[int]:
    """A row for each band's label so that no two labels overlap: each goes on the first row
    whose last label ends before it starts (widths estimated from the text at 11 px type)."""
    per_s = width_px / max(span_s, 1e-6)
    ends = [-1e9] * rows
    out = []
    for b in phases:
        centre = (b.start + b.end) / 2 * per_s
        half = (6.5 * len(b.label) + 12) / 2
        row = next((r for r in range(rows) if ends[r] < centre - half), min(range(rows), key=lambda r: ends[r]))
        ends[row] = centre + half
        out.append(row)
    return out


Shapes = list[dict[str, Any]]


def _bands(phases: Sequence[Band], span_s: float) -> tuple[Shapes, Shapes]:
    """The phases as shaded bands on the memory plot, each labelled on a row of its own."""
    shapes: Shapes = []
    notes: Shapes = []
    for b, row in zip(phases, label_rows(phases, span_s), strict=True):
        shapes.append(
            {"type": "rect", "xref": "x", "yref": "y domain", "x0": b.start, "x1": max(b.end, b.start + 0.02),
             "y0": 0, "y1": 1, "fillcolor": BAND_COLORS[b.kind], "line": {"width": 0}, "layer": "above"}
        )  # fmt: skip
        notes.append(
            {"x": (b.start + b.end) / 2, "xref": "x", "y": 1.0 - 0.075 * row, "yref": "y domain", "text": b.label,
             "showarrow": False, "font": {"size": 11, "color": "#c00000" if b.kind == "FAILED" else "#333"},
             "bgcolor": "rgba(255,255,255,0.75)"}
        )  # fmt: skip
    return shapes, notes


def _predicted(parts: Sequence[PredictedPart], measured_top: float) -> tuple[Shapes, Shapes]:
    """Cumulative predicted levels: each line is 'everything up to this part'. A level far above
    what the load reached (a multi-GiB prompt cache cap) would flatten the chart: it is written at
    the top instead of drawn."""
    shapes: Shapes = []
    notes: Shapes = []
    level = 0
    shown_top = measured_top
    for i, part in enumerate(parts):
        level += part.bytes
        last = i == len(parts) - 1
        if i and level / MIB > 1.6 * max(shown_top, 1.0):
            notes.append(
                {"x": 1.0, "xref": "x domain", "y": 1.0, "yref": "y domain", "xanchor": "right", "yanchor": "bottom",
                 "text": f"+ {part.label}: {level / MIB:.0f} MiB (above the scale)", "showarrow": False,
                 "font": {"size": 10, "color": "#b35900"}}
            )  # fmt: skip
            continue
        shown_top = max(shown_top, level / MIB)
        y = level / MIB
        shapes.append(
            {"type": "line", "xref": "x domain", "yref": "y", "x0": 0, "x1": 1, "y0": y, "y1": y,
             "line": {"dash": "dot" if last else "dash", "width": 1, "color": "orange"}}
        )  # fmt: skip
        notes.append(
            {"x": 0, "xref": "x domain", "y": y, "yref": "y", "xanchor": "left", "yanchor": "bottom",
             "text": f"{'+ ' if i else ''}{part.label}: {level / MIB:.0f} MiB", "showarrow": False,
             "font": {"size": 10, "color": "#b35900"}}
        )  # fmt: skip
    return shapes, notes


def predicted_parts(estimate: dict[str, Any]) -> list[PredictedPart]:
    """The stacked reference levels from a run's estimate (Estimate.to_json()): weights, + KV,
    + the rest = at READY, + what may grow after READY = total."""
    if not estimate:
        return []
    weights = int(estimate.get("weights_bytes") or 0) + int(estimate.get("repack_bytes") or 0)
    kv = int(estimate.get("kv_bytes") or 0) + int(estimate.get("recurrent_bytes") or 0)
    at_ready = int(estimate.get("at_ready_bytes") or estimate.get("total_bytes") or 0)
    parts = [PredictedPart("weights", weights), PredictedPart("KV cache", kv)]
    rest = at_ready - weights - kv
    if rest > 0:
        parts.append(PredictedPart("the rest = at READY", rest))
    after = int(estimate.get("after_load_bytes") or 0)
    if after > 0:
        parts.append(PredictedPart("after-READY caps = total", after))
    return [p for p in parts if p.bytes > 0]


def run_load_figure(history: History, run: Run, *, height: int = 460) -> go.Figure | None:
    """The load view of one recorded run (History), or None before it has started."""
    if run.started_at is None:
        return None
    end = run.ready_at or run.ended_at
    samples = history.samples(run.started_at - 1.0, (end or run.started_at + 120.0) + AFTER_S)
    return load_figure(
        samples,
        history.events(run.run_id),
        started_at=run.started_at,
        ended_at=end,
        failed=run.outcome == "failed" and run.ready_at is None,
        predicted=predicted_parts(run.estimate),
        baseline_ram_used=run.baseline_ram_used_bytes,
        height=height,
    )
