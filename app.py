"""Zoe Panel entry point: ``streamlit run app.py``."""

import streamlit as st

from zoe_panel.errors import ZoePanelError
from zoe_panel.runtime import get_runtime
from zoe_panel.ui.alarm_view import alarm_toast
from zoe_panel.ui.auth_view import allowed, login_page, logout_button
from zoe_panel.ui.boot import app_run, follow_deep_link, mark_app_seen, once_notice, startup_error
from zoe_panel.ui.widgets import state_line

st.set_page_config(page_title="Zoe Panel", page_icon=":material/memory:", layout="wide")

try:
    rt = get_runtime()
except ZoePanelError as e:  # a damaged settings or state file: a message, never a traceback
    startup_error(e)
mark_app_seen()

if not allowed(rt):
    # Only the sign-in (or refusal) page exists for this session: no other page can run, whatever the URL.
    st.navigation([st.Page(login_page, title="Sign in", url_path="signin")], position="hidden").run()
    st.stop()

pages = [
    st.Page("pages/engine.py", title="Engine", icon=":material/settings_power:", default=True),
    st.Page("pages/models.py", title="Models", icon=":material/inventory_2:"),
    st.Page("pages/monitor.py", title="Monitor", icon=":material/monitoring:"),
    st.Page("pages/chat.py", title="Chat", icon=":material/chat:"),
    st.Page("pages/suites.py", title="Suites", icon=":material/checklist:"),
    st.Page("pages/lab.py", title="Lab", icon=":material/science:"),
    st.Page("pages/endpoint.py", title="Endpoint", icon=":material/hub:"),
    st.Page("pages/workers.py", title="Workers", icon=":material/lan:"),
    st.Page("pages/history.py", title="History", icon=":material/history:"),
    st.Page("pages/audit.py", title="Audit log", icon=":material/policy:"),
    st.Page("pages/settings.py", title="Settings", icon=":material/tune:"),
]
nav = st.navigation(pages)
follow_deep_link(pages)


@st.fragment(run_every=2.0)
def engine_badge() -> None:
    st.caption("Engine")
    st.markdown(state_line(rt.engine.status()))
    alarm_toast(rt)


once_notice(rt.history.notice)

with st.sidebar:
    engine_badge()
    logout_button(rt)

with app_run():
    nav.run()
