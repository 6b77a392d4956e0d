"""Prompt-suites page pieces: edit, run against the engine, compare runs."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from zoe_panel.errors import ZoePanelError
from zoe_panel.runtime import Runtime
from zoe_panel.suites import Suite, compare, parse_prompts, run_suite
from zoe_panel.ui.widgets import md

EXAMPLE = "What is the capital of France? ||| Paris\nWrite a haiku about the sea.\nWhat is 12*12? ||| 144"


def editor(rt: Runtime) -> Suite | None:
    names = rt.history.suite_names()
    choice = str(st.selectbox("Suite", ["(new)", *names], key="suite-choice"))
    data = rt.history.suite(choice) if choice != "(new)" else None
    saved = Suite.from_json(data) if data else None
    name = st.text_input("Name", saved.name if saved else "", key=f"suite-name-{choice}")
    text = st.text_area(
        "Prompts: one a line; after ||| the words the answer must contain, separated by ;;",
        saved.to_text() if saved else EXAMPLE,
        height=180,
        key=f"suite-prompts-{choice}",
    )
    c1, c2, c3 = st.columns(3)
    max_tokens = c1.number_input("Max tokens", 1, 8192, saved.max_tokens if saved else 128, key=f"suite-max-{choice}")
    seed = c2.number_input("Seed", 0, 2**31 - 1, saved.seed if saved else 42, key=f"suite-seed-{choice}")
    temp = c3.number_input(
        "Temperature", 0.0, 2.0, saved.temperature if saved else 0.0, 0.1, key=f"suite-temp-{choice}"
    )
    try:
        suite = Suite(name.strip(), parse_prompts(text), int(max_tokens), float(temp), int(seed))
    except ZoePanelError as e:
        st.caption(str(e))
        return None
    if st.button("Save suite", key="suite-save"):
        rt.history.save_suite(suite.name, suite.to_json())
        st.success(f"Saved {suite.name} ({len(suite.prompts)} prompts).")
    return suite


def runner(rt: Runtime, suite: Suite | None) -> None:
    if suite is None:
        return
    if not st.button("Run suite against the running engine", key="suite-run", type="primary"):
        return
    rt.history.save_suite(suite.name, suite.to_json())
    bar = st.progress(0.0, text="starting…")

    def show(i: int, n: int) -> None:
        bar.progress(i / n, text=f"prompt {i}/{n}")

    try:
        rows = run_suite(rt, suite, show)
    except ZoePanelError as e:
        st.error(md(e, inline=False))
        return
    shown = [
        {
            "prompt": r["prompt"][:60],
            "pass": r["passed"],
            "TTFT ms": round(r["ttft_ms"] or 0, 1),
            "prompt tok/s": r["prompt_tokens_per_s"],
            "gen tok/s": r["gen_tokens_per_s"],
            "tokens": r["completion_tokens"],
            "answer": r["answer"][:120],
        }
        for r in rows
    ]
    st.dataframe(shown, hide_index=True, key="suite-results")


def comparison(rt: Runtime, name: str) -> None:
    rows = compare(rt, name) if name else []
    if not rows:
        st.caption("No runs of this suite recorded yet.")
        return
    st.dataframe([{k: v for k, v in r.items() if k != "when"} for r in rows], hide_index=True, key="suite-compare")
    labels = [
        f"{r['model']} ctx {r['ctx']} {r['cache']} ngl {r['gpu_layers']} ({(r['run_id'] or '')[-6:]})" for r in rows
    ]
    fig = go.Figure(
        [
            go.Bar(name="gen tok/s", x=labels, y=[r["gen_tok_s"] for r in rows]),
            go.Bar(name="prompt tok/s / 10", x=labels, y=[(r["prompt_tok_s"] or 0) / 10 for r in rows]),
        ]
    )
    fig.update_layout(barmode="group", height=360, margin={"l": 30, "r": 10, "t": 10, "b": 80})
    with st.container(key="suite-compare-chart"):
        st.plotly_chart(fig, key="suite-compare-plot")
