"""History page pieces."""

from __future__ import annotations

from typing import Any

import streamlit as st

from zoe_panel.runs_report import run_row, runs_rows, to_csv
from zoe_panel.runtime import Runtime
from zoe_panel.ui.charts import memory_figure
from zoe_panel.ui.timeline import event_markers, window_markers
from zoe_panel.ui.widgets import fmt_bytes, md

MIB = 1024 * 1024


def _display(row: dict[str, Any]) -> dict[str, Any]:
    import datetime as dt

    def mib(v: Any) -> Any:
        return round(v / MIB, 1) if v else None

    return {
        "run": row["run_id"],
        "started": dt.datetime.fromtimestamp(row["started_at"]).strftime("%Y-%m-%d %H:%M:%S")
        if row["started_at"]
        else "",
        "model": row["model"],
        "outcome": row["outcome"],
        "ctx": row["ctx"],
        "cache": row["cache"],
        "slots": row["parallel"],
        "flavor": row["flavor"],
        "ready (s)": round(row["time_to_ready_s"], 2) if row["time_to_ready_s"] else None,
        "KV predicted (MiB)": mib(row["kv_predicted_bytes"]),
        "KV llama.cpp (MiB)": mib(row["kv_reported_bytes"]),
        "at READY predicted (MiB)": mib(row["at_ready_bytes"]),
        "at READY measured (MiB)": mib(row["measured_peak_bytes"]),
        "error %": row["error_pct"],
        "after READY grew (MiB)": mib(row["growth_after_ready_bytes"]),
        "after-READY caps (MiB)": mib(row["after_load_cap_bytes"]),
        "load": row["load_progress_text"],
        "power mode": row["power_mode"] or "-",
        "W (gen)": row["mean_power_w"],
        "tok/J": row["tokens_per_j"],
        "reason": row["reason"],
    }


def runs_table(rt: Runtime) -> list[dict[str, Any]]:
    models = sorted({r.model for r in rt.history.runs() if r.model})
    model = st.selectbox("Model", ["(all)", *models], key="history-model")
    rows = runs_rows(rt.history, model=None if model == "(all)" else model)
    shown = [_display(r) for r in rows]
    if shown:
        st.dataframe(shown, hide_index=True, key="history-table")
        st.download_button(
            "Export CSV", to_csv(rows), file_name="zoe-panel-runs.csv", mime="text/csv", key="history-csv"
        )
    return shown


def run_chart(rt: Runtime, run_id: str) -> None:
    """The run's load view (Start -> READY, phases, predicted parts), its growth after READY, and
    its whole lifetime on the memory chart."""
    from zoe_panel.engine.loadlog import progress_text
    from zoe_panel.ui.loadview import run_load_figure

    run = rt.history.run(run_id)
    if run is None:
        return
    fig_load = run_load_figure(rt.history, run)
    if fig_load is not None:
        with st.container(key="history-load"):
            st.plotly_chart(fig_load, key="history-load-plot")
    if run.load_progress:
        st.warning(md(progress_text(run.load_progress)))
    growth, cap = run.growth_after_ready_bytes, run.after_load_cap_bytes
    if growth is not None:
        st.caption(
            f"After READY the engine grew by {fmt_bytes(growth)}"
            + (f" of the {fmt_bytes(cap)} the estimate allows ({100 * growth / cap:.0f} %)" if cap else "")
        )
    start = (run.started_at or 0) - 5
    end = run.ended_at or ((run.ready_at or start) + 60)
    samples = rt.history.samples(start, end)
    markers = event_markers(rt.history.events(run_id))
    _, predicted = window_markers(rt.history, start, end)
    fig = memory_figure(
        samples,
        markers=markers,
        predicted_total_bytes=run.predicted_total_bytes or predicted,
        height=300,
    )
    with st.container(key="history-chart"):
        st.plotly_chart(fig, key="history-plot")
    if run.diagnosis:
        st.error(md(run.diagnosis, inline=False))


def compare_runs(rt: Runtime, a: str, b: str) -> None:
    ra, rb = rt.history.run(a), rt.history.run(b)
    if ra is None or rb is None:
        return
    left, right = run_row(rt.history, ra), run_row(rt.history, rb)
    rows = []
    for key in left:
        va, vb = left[key], right[key]
        if key.endswith("_bytes"):
            va, vb = fmt_bytes(va), fmt_bytes(vb)
        rows.append({"field": key, "A": str(va), "B": str(vb)})
    st.dataframe(rows, hide_index=True, key="history-compare")
