"""Pure plotly figure builders (no Streamlit), so they can be tested and benchmarked alone."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import plotly.graph_objects as go

from zoe_panel.telemetry.base import Sample

GIB = 1024**3


@dataclass(frozen=True)
class Marker:
    """A vertical marker on the timeline: a load phase, READY, or a failure."""

    t: float
    label: str
    kind: str = "phase"  # phase | ready | failure


def _x(samples: Sequence[Sample]) -> np.ndarray:
    # numpy columns, not lists: plotly validates a list element by element (a 1 h window took
    # ~55 ms to build that way), an array in one step
    return (np.fromiter((s.t for s in samples), float, len(samples)) * 1000).astype("datetime64[ms]")


def _col(samples: Sequence[Sample], get: Callable[[Sample], float | int | None], scale: float = 1.0) -> np.ndarray:
    """One field of every sample as floats; None becomes NaN (a gap in the line)."""
    col = np.fromiter(((v if (v := get(s)) is not None else np.nan) for s in samples), float, len(samples))
    return col / scale if scale != 1.0 else col


def memory_figure(
    samples: Sequence[Sample],
    *,
    markers: Sequence[Marker] = (),
    predicted_total_bytes: int | None = None,
    title: str = "",
    height: int = 420,
) -> go.Figure:
    x = _x(samples)
    traces: list[dict[str, object]] = []

    def line(name: str, values: np.ndarray, **kw: object) -> None:
        if len(values) and not np.isnan(values).all():
            traces.append({"type": "scattergl", "x": x, "y": values, "name": name, "mode": "lines", **kw})

    line("RAM used", _col(samples, lambda s: s.ram_used_bytes, GIB), line={"width": 2})
    line("RAM available", _col(samples, lambda s: s.ram_available_bytes, GIB))
    line("page cache", _col(samples, lambda s: s.ram_cached_bytes, GIB), line={"dash": "dot"})
    line("swap used", _col(samples, lambda s: s.swap_used_bytes if s.swap_total_bytes else None, GIB))
    line("GPU memory", _col(samples, lambda s: s.gpu_mem_used_bytes, GIB), line={"width": 2})
    line("engine RSS", _col(samples, lambda s: s.engine_rss_bytes, GIB), line={"dash": "dash"})
    line("CPU %", _col(samples, lambda s: s.cpu_pct), yaxis="y2", line={"width": 1, "color": "rgba(120,120,120,0.5)"})
    line("GPU %", _col(samples, lambda s: s.gpu_util_pct), yaxis="y2", line={"width": 1})
    shapes: list[dict[str, object]] = []
    notes: list[dict[str, object]] = []
    if predicted_total_bytes and samples:
        # Compare with the engine's own memory (RSS, plus GPU memory on a GPU), not system-wide use.
        y = predicted_total_bytes / GIB
        shapes.append(
            {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": y, "y1": y,
             "line": {"dash": "dash", "color": "orange"}}
        )  # fmt: skip
        notes.append(
            {"xref": "paper", "x": 0, "y": y, "xanchor": "left", "yanchor": "bottom", "showarrow": False,
             "text": f"predicted engine total {predicted_total_bytes / GIB:.2f} GiB"}
        )  # fmt: skip
    marker_trace, marker_lines = _markers(markers, samples)
    traces += marker_trace
    shapes += marker_lines
    layout: dict[str, object] = {
        "title": {"text": title} if title else None,
        "height": height,
        "margin": {"l": 40, "r": 40, "t": 40 if title else 10, "b": 30},
        "yaxis": {"title": {"text": "GiB"}, "rangemode": "tozero"},
        "yaxis2": {"title": {"text": "%"}, "overlaying": "y", "side": "right", "range": [0, 100], "showgrid": False},
        "legend": {"orientation": "h", "y": -0.15},
        "hovermode": "x unified",
        "uirevision": "memory",  # keep zoom/pan across the once-a-second refresh
        "shapes": shapes,
        "annotations": notes,
    }
    return unvalidated_figure(traces, layout)


def unvalidated_figure(data: Sequence[Mapping[str, object]], layout: Mapping[str, object]) -> go.Figure:
    """A figure from plain dicts, without plotly's property validation: that validation was most of
    the cost of every Monitor refresh (~13 of 18 ms for a small chart; 415 ms for the load view built
    shape by shape). The unit tests validate what these builders make, so a wrong key still fails."""
    return go.Figure(data=data, layout={k: v for k, v in layout.items() if v is not None}, _validate=False)


_COLORS = {"phase": "rgba(31,119,180,0.6)", "ready": "green", "failure": "red"}


def _markers(
    markers: Sequence[Marker], samples: Sequence[Sample]
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """The markers' labelled points (a trace) and their vertical lines (shapes)."""
    if not markers:
        return [], []
    top = max((s.ram_total_bytes for s in samples), default=0) / GIB or 1.0
    xs = [datetime.fromtimestamp(m.t) for m in markers]
    trace: dict[str, object] = {
        "type": "scatter",
        "x": xs,
        "y": [top * 0.98] * len(markers),
        "mode": "markers+text",
        "name": "load events",
        "text": [m.label for m in markers],
        "textposition": "bottom right",
        "textfont": {"size": 10},
        "marker": {"symbol": "triangle-down", "size": 9, "color": [_COLORS.get(m.kind, "gray") for m in markers]},
        "hovertext": [m.label for m in markers],
        "hoverinfo": "text",
    }
    lines: list[dict[str, object]] = [
        {
            "type": "line",
            "x0": x,
            "x1": x,
            "y0": 0,
            "y1": 1,
            "yref": "paper",
            "line": {"color": _COLORS.get(m.kind, "gray"), "width": 1, "dash": "dot"},
        }
        for m, x in zip(markers, xs, strict=True)
    ]
    return [trace], lines
