"""Lab: tuning sweeps with a Pareto chart of speed against memory, and a recommended preset."""

import streamlit as st

from zoe_panel.runtime import get_runtime
from zoe_panel.ui.boot import guard
from zoe_panel.ui.sweep_view import sweep_form, sweep_jobs, sweep_results

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
