"""Markers and the predicted level for a time window, from History (so a panel restart keeps them)."""

from __future__ import annotations

import re

from zoe_panel.engine.loadlog import LoadEvent
from zoe_panel.history import History
from zoe_panel.ui.charts import Marker

MARKED_PHASES = ("model_buffer", "kv_cache", "recurrent", "compute_buffer", "listening", "failure")


def event_markers(events: list[LoadEvent], models: dict[str, str] | None = None) -> list[Marker]:
    """Markers for the load phases; with ``models`` (a router's instance pid -> model id) each
    marker names the model whose load it belongs to."""
    out = []
    for e in events:
        if e.phase not in MARKED_PHASES:
            continue
        m = _PID.match(e.text)
        owner = (models or {}).get(m.group(1), "") if m else ""
        label = f"{owner}: {e.label()}" if owner else e.label()
        out.append(Marker(e.t, label, "failure" if e.is_failure else "phase"))
    return out


_PID = re.compile(r"^\[(\d+)\] ")


def window_markers(
    history: History, start: float, end: float, models: dict[str, str] | None = None
) -> tuple[list[Marker], int | None]:
    """(markers, predicted total of the newest run in the window)."""
    markers = event_markers([e for _, e in history.events_between(start, end)], models)
    predicted = None
    for run in history.runs_between(start, end):
        if run.ready_at and start <= run.ready_at <= end:
            markers.append(Marker(run.ready_at, f"READY in {run.time_to_ready_s or 0:.1f} s", "ready"))
        if run.outcome == "failed" and run.ended_at and start <= run.ended_at <= end:
            reason = (run.reason or "failed")[:60]
            markers.append(Marker(run.ended_at, f"FAILED: {reason}", "failure"))
        predicted = run.predicted_total_bytes or predicted
    return sorted(markers, key=lambda m: m.t), predicted
