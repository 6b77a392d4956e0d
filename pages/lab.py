"""Lab: tuning sweeps with a Pareto chart of speed against memory, and a recommended preset."""

import streamlit as st

from zoe_panel.runtime import get_runtime
from zoe_panel.ui.boot import guard
from zoe_panel.ui.sweep_view import compare_section, comparisons, sweep_form, sweep_jobs, sweep_results

guard()

rt = get_runtime()
st.title("Lab")
models = [e.name for e in rt.store.entries() if e.ok]
if not models:
    st.warning("No usable model: add one on the Models page.")
else:
    sweep_form(rt, models)


@st.fragment(run_every=2.0)
def live() -> None:
    sweep_jobs(rt)
    sweep_results(rt)


live()
st.divider()
if models:
    compare_section(rt, models)


@st.fragment(run_every=5.0)
def compared() -> None:
    for job in [j for j in rt.jobs.jobs() if j.kind == "compare"]:
        if job.active:
            st.progress(job.progress, text=job.detail)
        elif job.state == "failed":
            st.error(job.error)
    comparisons(rt)


compared()
