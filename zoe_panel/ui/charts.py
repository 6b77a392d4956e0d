"""Pure plotly figure builders (no Streamlit), so they can be tested and benchmarked alone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import plotly.graph_objects as go

from zoe_panel.telemetry.base import Sample

GIB = 1024**3


@dataclass(frozen=True)
class Marker:
    """A vertical marker on the timeline: a load phase, READY, or a failure."""

    t: float
    label: str
    kind: str = "phase"  # phase | ready | failure


def _x(samples: Sequence[Sample]) -> list[datetime]:
    return [datetime.fromtimestamp(s.t) for s in samples]


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

    def line(name: str, values: list[float | None], **kw: object) -> None:
        if any(v is not None for v in values):
            fig.add_trace(go.Scattergl(x=x, y=values, name=name, mode="lines", **kw))

    line("RAM used", [s.ram_used_bytes / GIB for s in samples], line={"width": 2})
    line("RAM available", [s.ram_available_bytes / GIB for s in samples])
    line("page cache", [s.ram_cached_bytes / GIB for s in samples], line={"dash": "dot"})
    line("swap used", [s.swap_used_bytes / GIB if s.swap_total_bytes else None for s in samples])
    line(
        "GPU memory",
        [s.gpu_mem_used_bytes / GIB if s.gpu_mem_used_bytes is not None else None for s in samples],
        line={"width": 2},
    )
    line(
        "engine RSS",
        [s.engine_rss_bytes / GIB if s.engine_rss_bytes is not None else None for s in samples],
        line={"dash": "dash"},
    )
    cpu = [s.cpu_pct for s in samples]
    if any(v is not None for v in cpu):
        fig.add_trace(
            go.Scattergl(
                x=x, y=cpu, name="CPU %", yaxis="y2", mode="lines", line={"width": 1, "color": "rgba(120,120,120,0.5)"}
            )
        )
    gpu_util = [s.gpu_util_pct for s in samples]
    if any(v is not None for v in gpu_util):
        fig.add_trace(go.Scattergl(x=x, y=gpu_util, name="GPU %", yaxis="y2", mode="lines", line={"width": 1}))
    if predicted_total_bytes and samples:
        # Compare with the engine's own memory (RSS, plus GPU memory on a GPU), not system-wide use.
        fig.add_hline(
            y=predicted_total_bytes / GIB,
            line_dash="dash",
            line_color="orange",
            annotation_text=f"predicted engine total {predicted_total_bytes / GIB:.2f} GiB",
            annotation_position="top left",
        )
    _add_markers(fig, markers, samples)
    fig.update_layout(
        title=title or None,
        height=height,
        margin={"l": 40, "r": 40, "t": 40 if title else 10, "b": 30},
        yaxis={"title": "GiB", "rangemode": "tozero"},
        yaxis2={"title": "%", "overlaying": "y", "side": "right", "range": [0, 100], "showgrid": False},
        legend={"orientation": "h", "y": -0.15},
        hovermode="x unified",
        uirevision="memory",  # keep zoom/pan across the once-a-second refresh
    )
    return fig


_COLORS = {"phase": "rgba(31,119,180,0.6)", "ready": "green", "failure": "red"}


def _add_markers(fig: go.Figure, markers: Sequence[Marker], samples: Sequence[Sample]) -> None:
    if not markers:
        return
    top = max((s.ram_total_bytes for s in samples), default=0) / GIB or 1.0
    xs = [datetime.fromtimestamp(m.t) for m in markers]
    for m, x in zip(markers, xs, strict=True):
        fig.add_shape(
            type="line",
            x0=x,
            x1=x,
            y0=0,
            y1=1,
            yref="paper",
            line={"color": _COLORS.get(m.kind, "gray"), "width": 1, "dash": "dot"},
        )
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
