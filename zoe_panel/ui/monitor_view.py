"""Monitor page: the live memory chart and the sampler's health."""

from __future__ import annotations

import time

import streamlit as st

from zoe_panel.runtime import Runtime
from zoe_panel.telemetry.ring import downsample
from zoe_panel.ui.charts import memory_figure
from zoe_panel.ui.timeline import window_markers
from zoe_panel.ui.widgets import fmt_bytes

WINDOWS = {"1 min": 60.0, "5 min": 300.0, "15 min": 900.0, "1 h": 3600.0}
MAX_POINTS = 1500


def router_models(rt: Runtime) -> dict[str, str] | None:
    """For a router engine: which instance (pid) loads which model, from its log."""
    from zoe_panel.engine import flavors
    from zoe_panel.engine.flavors.router import instance_models

    st_ = rt.engine.status()
    if st_.spec is None or not flavors.get(st_.spec.flavor).multi_model:
        return None
    return instance_models([line.split(" ", 1)[-1] for line in rt.engine.logs(4000)])


def render_monitor(rt: Runtime, window_s: float) -> None:
    samples = rt.ring.snapshot(since=time.time() - window_s)
    sampler = rt.sampler
    latest = samples[-1] if samples else None
    if latest is not None:
        c = st.columns(5)
        c[0].metric("RAM used", fmt_bytes(latest.ram_used_bytes))
        c[1].metric("RAM available", fmt_bytes(latest.ram_available_bytes))
        c[2].metric("Page cache", fmt_bytes(latest.ram_cached_bytes))
        c[3].metric("GPU memory", fmt_bytes(latest.gpu_mem_used_bytes))
        c[4].metric("CPU", f"{latest.cpu_pct:.0f} %" if latest.cpu_pct is not None else "–")
    now = time.time()
    markers, predicted = window_markers(rt.history, now - window_s, now, router_models(rt))
    fig = memory_figure(downsample(samples, MAX_POINTS), markers=markers, predicted_total_bytes=predicted)
    with st.container(key="monitor-chart"):
        st.plotly_chart(fig, key="monitor-plot", config={"displaylogo": False})
    if sampler is not None:
        note = f"source: {sampler.source.name} · {sampler.current_hz():g} Hz · {sampler.stats.samples} samples"
        if sampler.stats.missed:
            note += f" · {sampler.stats.missed} missed"
        st.caption(note)
        if sampler.stats.last_error and time.time() - sampler.stats.last_error_at < 30:
            st.warning(f"telemetry error (sampling continues): {sampler.stats.last_error}")
    for n in rt.telemetry_notes:
        st.caption(f"skipped {n}")
