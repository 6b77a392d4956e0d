"""Monitor: live memory and CPU (and GPU where the source has it), from the one sampler."""

import streamlit as st

from zoe_panel.runtime import get_runtime
from zoe_panel.ui.boot import guard
from zoe_panel.ui.monitor_view import WINDOWS, render_monitor

guard()

rt = get_runtime()
st.title("Monitor")
window = st.radio("Window", list(WINDOWS), index=1, horizontal=True, key="monitor-window")


@st.fragment(run_every=1.0)
def live() -> None:
    render_monitor(rt, WINDOWS[window])


live()
