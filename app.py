"""Zoe Panel entry point: ``streamlit run app.py``."""

import streamlit as st

from zoe_panel.runtime import get_runtime
from zoe_panel.ui.widgets import state_line

st.set_page_config(page_title="Zoe Panel", page_icon="🦙", layout="wide")

rt = get_runtime()

pages = [
    st.Page("pages/engine.py", title="Engine", icon="⚙️", default=True),
    st.Page("pages/models.py", title="Models", icon="📦"),
    st.Page("pages/monitor.py", title="Monitor", icon="📈"),
    st.Page("pages/chat.py", title="Chat", icon="💬"),
]
nav = st.navigation(pages)

with st.sidebar:
    st.caption("Engine")
    st.markdown(state_line(rt.controller.status()))

nav.run()
