"""Pure plotly figure builders (no Streamlit), so they can be tested and benchmarked alone."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
    fig = go.Figure()
    x = _x(samples)

    def line(name: str, values: np.ndarray, **kw: object) -> None:
        if len(values) and not np.isnan(values).all():
            fig.add_trace(go.Scattergl(x=x, y=values, name=name, mode="lines", **kw))

    line("RAM used", _col(samples, lambda s: s.ram_used_bytes, GIB), line={"width": 2})
    line("RAM available", _col(samples, lambda s: s.ram_available_bytes, GIB))
    line("page cache", _col(samples, lambda s: s.ram_cached_bytes, GIB), line={"dash": "dot"})
    line("swap used", _col(samples, lambda s: s.swap_used_bytes if s.swap_total_bytes else None, GIB))
    line("GPU memory", _col(samples, lambda s: s.gpu_mem_used_bytes, GIB), line={"width": 2})
    line("engine RSS", _col(samples, lambda s: s.engine_rss_bytes, GIB), line={"dash": "dash"})
    line("CPU %", _col(samples, lambda s: s.cpu_pct), yaxis="y2", line={"width": 1, "color": "rgba(120,120,120,0.5)"})
    line("GPU %", _col(samples, lambda s: s.gpu_util_pct), yaxis="y2", line={"width": 1})
    # shapes and annotations in one go: added one by one, plotly validates the whole list each time
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
    shapes += _add_markers(fig, markers, samples)
    fig.update_layout(
        title=title or None,
        height=height,
        margin={"l": 40, "r": 40, "t": 40 if title else 10, "b": 30},
        yaxis={"title": "GiB", "rangemode": "tozero"},
        yaxis2={"title": "%", "overlaying": "y", "side": "right", "range": [0, 100], "showgrid": False},
        legend={"orientation": "h", "y": -0.15},
        hovermode="x unified",
        uirevision="memory",  # keep zoom/pan across the once-a-second refresh
        shapes=shapes,
        annotations=notes,
    )
    return fig


_COLORS = {"phase": "rgba(31,119,180,0.6)", "ready": "green", "failure": "red"}


def _add_markers(fig: go.Figure, markers: Sequence[Marker], samples: Sequence[Sample]) -> list[dict[str, object]]:
    """The markers' labelled points as a trace; their vertical lines returned as shape dicts."""
    if not markers:
        return []
    top = max((s.ram_total_bytes for s in samples), default=0) / GIB or 1.0
    xs = [datetime.fromtimestamp(m.t) for m in markers]
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=[top * 0.98] * len(markers),
            mode="markers+text",
            name="load events",
            text=[m.label for m in markers],
            textposition="bottom right",
            textfont={"size": 10},
            marker={"symbol": "triangle-down", "size": 9, "color": [_COLORS.get(m.kind, "gray") for m in markers]},
            hovertext=[m.label for m in markers],
            hoverinfo="text",
        )
    )
    return [
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
