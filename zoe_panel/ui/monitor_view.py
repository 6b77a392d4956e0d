"""Monitor page: the live memory chart and the sampler's health."""

from __future__ import annotations

import time

import streamlit as st

from zoe_panel.runtime import Runtime
from zoe_panel.telemetry.ring import downsample
from zoe_panel.ui.charts import memory_figure
from zoe_panel.ui.timeline import window_markers
from zoe_panel.ui.widgets import fmt_bytes, md

WINDOWS = {"1 min": 60.0, "5 min": 300.0, "15 min": 900.0, "1 h": 3600.0}
MAX_POINTS = 1500


def refresh_period(window_s: float, loading: bool) -> float:
    """Seconds between Monitor redraws: each second while an engine loads (the moment to watch) or
    on the 1-minute window; on wider windows a second moves the line by less than a pixel or two,
    and each redraw costs the browser a full Plotly render on the cores the engine uses: about 150
    redraws per window, between 1 and 10 s."""
    return 1.0 if loading else max(1.0, min(10.0, window_s / 150))


def router_models(rt: Runtime) -> dict[str, str] | None:
    """For a router engine: which instance (pid) loads which model, from its log."""
    from zoe_panel.engine import flavors
    from zoe_panel.engine.flavors.router import instance_models

    st_ = rt.engine.status()
    if st_.spec is None or not flavors.get(st_.spec.flavor).multi_model:
        return None
    return instance_models([line.split(" ", 1)[-1] for line in rt.engine.logs(4000)])


LOAD_VIEW_AFTER_S = 120.0  # the load view stays this long after READY / FAILED


def load_view(rt: Runtime) -> None:
    """While an engine starts (and a while after): its load, zoomed to Start -> READY."""
    from zoe_panel.engine.base import EngineState
    from zoe_panel.ui.loadview import load_figure, predicted_parts

    status = rt.engine.status()
    run = rt.history.run(status.run_id) if status.run_id else None
    if run is None or run.started_at is None:
        return
    end = run.ready_at or (run.ended_at if run.outcome == "failed" else None)
    if status.state != EngineState.STARTING and (end is None or time.time() - end > LOAD_VIEW_AFTER_S):
        return
    samples = rt.ring.snapshot(since=run.started_at - 1.0)
    fig = load_figure(
        samples,
        rt.recorder.current_events or rt.history.events(run.run_id),
        started_at=run.started_at,
        ended_at=end,
        failed=run.outcome == "failed" and run.ready_at is None,
        predicted=predicted_parts(run.estimate),
        baseline_ram_used=run.baseline_ram_used_bytes,
        height=420,
    )
    with st.container(key="monitor-load"):
        st.markdown(f"**Load of {md(run.model or '')}** · {status.state.value}")
        st.plotly_chart(fig, key="monitor-load-plot", config={"displaylogo": False})


def after_ready_line(rt: Runtime) -> None:
    """The engine's growth since READY against what the estimate allowed for it."""
    from zoe_panel.engine.base import EngineState

    status = rt.engine.status()
    run = rt.history.run(status.run_id) if status.run_id else None
    latest = rt.ring.latest()
    if status.state != EngineState.READY or run is None or latest is None or latest.engine_rss_bytes is None:
        return
    ready = run.ready_rss_bytes
    if ready is None:
        return
    est = run.estimate
    growth = latest.engine_rss_bytes - ready
    peak = (run.peak_after_ready_rss_bytes or latest.engine_rss_bytes) - ready
    cap = int(est.get("after_load_bytes") or 0)
    parts = ", ".join(
        f"{label} {fmt_bytes(est.get(key))}"
        for key, label in (
            ("prompt_cache_bytes", "prompt cache"),
            ("checkpoint_bytes", "checkpoints"),
            ("working_set_bytes", "compute working set"),
        )
        if est.get(key)
    )
    share = f" ({100 * peak / cap:.0f} % of it)" if cap else ""
    with st.container(key="monitor-after-ready"):
        st.markdown(
            f"**Since READY** the engine grew by {fmt_bytes(max(0, growth))} (peak {fmt_bytes(max(0, peak))}{share}); "
            f"the estimate allows {fmt_bytes(cap)} after READY" + (f": {parts}" if parts else "")
        )


def render_monitor(rt: Runtime, window_s: float) -> None:
    from zoe_panel.ui.alarm_view import alarm_banner

    alarm_banner(rt, "monitor")
    load_view(rt)
    after_ready_line(rt)
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
        if latest is not None and latest.power_w is not None:
            rail = f" (CPU/GPU rail {latest.power_cpu_gpu_w:.1f} W)" if latest.power_cpu_gpu_w is not None else ""
            note += f" · power {latest.power_w:.1f} W{rail}"
        mode = rt.power_mode()
        if mode:
            offered = ", ".join(f"{name} ({i})" for i, name in rt.power_modes())
            note += f" · power mode {mode}; this board offers {offered} (sudo nvpmodel -m ID)"
        st.caption(note)
        if sampler.stats.last_error and time.time() - sampler.stats.last_error_at < 30:
            st.warning(f"telemetry error (sampling continues): {sampler.stats.last_error}")
    for n in rt.telemetry_notes:
        st.caption(f"skipped {n}")
