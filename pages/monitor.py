"""Monitor: live memory and CPU (and GPU where the source has it), from the one sampler."""

import streamlit as st

from zoe_panel.runtime import get_runtime
from zoe_panel.ui.boot import guard
from zoe_panel.ui.monitor_view import WINDOWS, refresh_period, render_monitor

guard()

rt = get_runtime()
st.title("Monitor")
window = st.radio("Window", list(WINDOWS), index=1, horizontal=True, key="monitor-window")
period = refresh_period(WINDOWS[window], rt.engine.is_loading())


@st.fragment(run_every=period)
def live() -> None:
    if refresh_period(WINDOWS[window], rt.engine.is_loading()) != period:
        st.rerun()  # an engine began or ended loading: the whole page, to set the new pace
    render_monitor(rt, WINDOWS[window])


live()
