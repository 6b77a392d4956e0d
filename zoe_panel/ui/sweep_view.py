"""The Lab page: a tuning sweep (form, progress, cancel, resume), its table, the Pareto chart of
generation speed against peak memory, and Apply for the recommendation."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
import streamlit as st

from zoe_panel.runtime import Runtime
from zoe_panel.sweep import SweepState
from zoe_panel.ui.widgets import attempt, md

MIB = 1024 * 1024


def pareto_figure(rows: list[dict[str, Any]], recommended: dict[str, Any] | None) -> go.Figure:
    """Generation tok/s against peak memory; the frontier as a line, the pick ringed."""
    ok = [r for r in rows if r.get("gen_tokens_per_s") and r.get("peak_bytes")]
    fig = go.Figure()
    others = [r for r in ok if not r.get("pareto")]
    front = sorted((r for r in ok if r.get("pareto")), key=lambda r: r["peak_bytes"])
    for name, group, mode in (("dominated", others, "markers"), ("Pareto frontier", front, "lines+markers")):
        fig.add_trace(
            go.Scatter(
                x=[r["peak_bytes"] / MIB for r in group],
                y=[r["gen_tokens_per_s"] for r in group],
                mode=mode,
                name=name,
                text=[r["config"] for r in group],
                hovertemplate="%{text}<br>%{y:.1f} tok/s, %{x:.0f} MiB<extra></extra>",
                marker={"size": 10 if name != "dominated" else 8, "opacity": 1.0 if name != "dominated" else 0.5},
            )
        )
    if recommended and recommended.get("peak_bytes"):
        fig.add_trace(
            go.Scatter(
                x=[recommended["peak_bytes"] / MIB],
                y=[recommended["gen_tokens_per_s"]],
                mode="markers",
                name="recommended",
                text=[recommended["config"]],
                marker={"size": 18, "symbol": "circle-open", "line": {"width": 3}},
                hovertemplate="recommended: %{text}<extra></extra>",
            )
        )
    fig.update_layout(
        xaxis_title="peak memory (MiB)",
        yaxis_title="generation tok/s",
        height=380,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"orientation": "h"},
    )
    return fig


def _ints(text: str, what: str) -> list[int]:
    from zoe_panel.errors import ConfigError

    try:
        vals = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise ConfigError(f"{what}: whole numbers separated by commas, e.g. 2048, 4096") from None
    if not vals:
        raise ConfigError(f"{what}: give at least one value")
    return vals


def sweep_form(rt: Runtime, models: list[str]) -> None:
    from zoe_panel.engine.base import CACHE_TYPES
    from zoe_panel.sweep import configs, new_sweep

    caps = rt.engine_capabilities()
    ngram = [t for t in (caps.spec_types if caps is not None else ()) if t.startswith("ngram")]
    suites = rt.history.suite_names()
    with st.form("lab-sweep", border=True):
        st.markdown("**New sweep**: each combination is started, replays the prompts, and is stopped.")
        model = st.selectbox("Model", models, key="lab-model")
        c1, c2, c3 = st.columns(3)
        ctx = c1.text_input("Context sizes", "2048", key="lab-ctx")
        cache = c2.multiselect("KV cache types", CACHE_TYPES, ["f16"], key="lab-cache")
        ubatch = c3.text_input("Micro-batch sizes", "512", key="lab-ubatch")
        c4, c5, c6 = st.columns(3)
        threads = c4.text_input("Threads (0 = engine default)", "0", key="lab-threads")
        parallel = c5.text_input("Parallel slots", "1", key="lab-parallel")
        draft = c6.multiselect(
            "Speculative", ["none", *ngram, *[m for m in models if m != model]], ["none"], key="lab-draft"
        )
        c7, c8 = st.columns(2)
        suite = c7.selectbox("Prompts", ["built-in (3 short prompts)", *suites], key="lab-suite")
        tol = c8.number_input("Recommend within % of the fastest", 0.0, 50.0, 5.0, key="lab-tolerance")
        go_ = st.form_submit_button("Start sweep", type="primary", key="lab-start")
    if go_:

        def start() -> Any:
            cfgs = configs(
                ctx=_ints(ctx, "context sizes"),
                cache_type=list(cache) or ["f16"],
                ubatch=_ints(ubatch, "micro-batch sizes"),
                threads=_ints(threads, "threads"),
                parallel=_ints(parallel, "parallel slots"),
                draft=["" if d == "none" else d for d in (draft or ["none"])],
            )
            s = new_sweep(
                rt,
                str(model),
                cfgs,
                suite="" if str(suite).startswith("built-in") else str(suite),
                tolerance_pct=float(tol),
            )
            return rt.start_sweep(s)

        if attempt(start) is not None:
            st.toast("Sweep started.")


def sweep_jobs(rt: Runtime) -> None:
    for job in [j for j in rt.jobs.jobs() if j.kind == "sweep"]:
        with st.container(key=f"lab-job-{job.id}", border=True):
            st.markdown(f"**sweep** · {md(job.state)}")
            if job.active:
                st.progress(job.progress, text=job.detail or "starting…")
                st.button("Cancel", key=f"lab-cancel-{job.id}", on_click=rt.jobs.cancel, args=(job.id,))
            elif job.state == "failed":
                st.error(md(job.error, inline=False))


def _r(v: Any, nd: int = 1) -> Any:
    return round(float(v), nd) if v is not None else None


def sweep_results(rt: Runtime) -> None:
    from zoe_panel.sweep import apply

    sweeps = rt.sweeps.all()
    if not sweeps:
        st.caption("No sweep yet.")
        return
    running = any(j.kind == "sweep" and j.active for j in rt.jobs.jobs())
    label = {s.id: f"{s.id} · {s.model} · {s.status} · {len(s.results)}/{len(s.configs)}" for s in sweeps}
    chosen = st.selectbox("Sweep", list(label), format_func=label.__getitem__, key="lab-sweep")
    s: SweepState = next(x for x in sweeps if x.id == chosen)
    # "running" without a job: the panel restarted mid-sweep; resume from the first unfinished one
    resumable = s.remaining and not running and s.status in ("pending", "running", "cancelled", "failed")
    if resumable and st.button(f"Resume ({len(s.remaining)} left)", key="lab-resume"):
        attempt(lambda: rt.start_sweep(s), success="Sweep resumed.")
    rows = s.rows()
    rec = s.recommended()
    with st.container(key="lab-table"):
        st.table(
            [
                {
                    "": "★" if rec is not None and r["config"] == rec["config"] else ("◆" if r.get("pareto") else ""),
                    "configuration": r["config"],
                    "outcome": r.get("outcome"),
                    "gen tok/s": _r(r.get("gen_tokens_per_s")),
                    "prompt tok/s": _r(r.get("prompt_tokens_per_s")),
                    "TTFT ms": _r(r.get("ttft_ms"), 0),
                    "peak MiB": round(r["peak_bytes"] / MIB, 1) if r.get("peak_bytes") else None,
                    "pass": r.get("pass_rate"),
                    "accepted": r.get("acceptance"),
                    "tok/J": r.get("tokens_per_j"),
                }
                for r in rows
            ]
        )
    if rows:
        with st.container(key="lab-pareto"):
            st.plotly_chart(pareto_figure(rows, rec), key="lab-pareto-chart", config={"displaylogo": False})
    if rec is not None:
        st.markdown(
            f"**Recommended** (within {s.tolerance_pct:g} % of the fastest, least memory): `{md(rec['config'])}`"
        )
        if st.button("Apply as the model's preset", key="lab-apply"):
            attempt(lambda: apply(rt, s, rec), success=f"Saved as {s.model}'s preset: the Engine page starts from it.")


def compare_section(rt: Runtime, models: list[str]) -> None:
    """Compare engines: the same model on llama-server and vLLM (or any flavours), measured alike."""
    from zoe_panel.engine import defaults, flavors

    choices = [n for n in flavors.names() if not flavors.get(n).multi_model]
    # the default engine against every engine of another kind (vLLM)
    preset = [defaults.FLAVOR, *[n for n in choices if flavors.get(n).memory_model != "llama.cpp"]]
    with st.form("lab-compare", border=True):
        st.markdown("**Compare engines**: each one is started, measured the same way, and stopped.")
        c1, c2, c3 = st.columns(3)
        model = c1.selectbox("Model", models, key="lab-compare-model")
        engines = c2.multiselect("Engines", choices, [p for p in preset if p in choices], key="lab-compare-engines")
        parallel = c3.number_input("Requests at once", 1, 64, 4, key="lab-compare-parallel")
        vllm_flags = st.text_input(
            "vLLM's extra flags", key="lab-compare-vllm-args", placeholder="--enforce-eager --dtype float32"
        )
        go_ = st.form_submit_button("Compare", key="lab-compare-go")
    if go_:
        import shlex

        from zoe_panel.compare import compare

        extra = {e: tuple(shlex.split(vllm_flags)) for e in engines if flavors.get(e).memory_model == "vllm"}

        def work(job: Any) -> Any:
            job.report(0.1, "starting the engines one after another")
            return compare(rt, str(model), list(engines), parallel=int(parallel), extra=extra)["verdict"]

        def submit() -> Any:
            for e, flags in extra.items():
                flavors.get(e).check_extra(flags)  # refused here, not in the job
            return rt.jobs.submit("compare", "", work, exclusive_key="the engine")

        attempt(submit, success="Comparison started.")


def comparisons(rt: Runtime) -> None:
    past = rt.history.comparisons(5)
    if not past:
        return
    last = past[0]
    rows = [r for r in last["rows"]]
    with st.container(key="lab-compare-table"):
        st.markdown(f"**Last comparison**: {md(last['model'])}, ctx {last['ctx']}")
        st.table(
            [
                {
                    "engine": r["engine"],
                    "outcome": r.get("outcome"),
                    "READY s": r.get("time_to_ready_s"),
                    "peak GiB": round((r.get("peak_load_bytes") or 0) / 2**30, 2) or None,
                    "KV B/token": r.get("kv_bytes_per_token"),
                    "TTFT ms": _r(r.get("ttft_ms"), 0),
                    "tok/s": _r(r.get("gen_tokens_per_s")),
                    f"tok/s × {r.get('parallel', '')}": _r(r.get("parallel_tokens_per_s")),
                    "pass": r.get("pass_rate"),
                }
                for r in rows
            ]
        )
        ok = [r for r in rows if r.get("outcome") == "ok"]
        if ok:
            fig = go.Figure()
            for key, name in (("gen_tokens_per_s", "single stream"), ("parallel_tokens_per_s", "parallel")):
                fig.add_trace(go.Bar(name=name, x=[r["engine"] for r in ok], y=[r.get(key) or 0 for r in ok]))
            fig.update_layout(barmode="group", yaxis_title="tok/s", height=300, margin={"t": 20, "b": 10})
            st.plotly_chart(fig, key="lab-compare-chart", config={"displaylogo": False})
        st.markdown(md(last["verdict"]))
