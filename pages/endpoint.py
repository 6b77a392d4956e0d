"""Endpoint: hand the running engine to clients (URL, model id, key, snippets, client check)."""

import streamlit as st

from zoe_panel.runtime import get_runtime
from zoe_panel.ui.boot import guard
from zoe_panel.ui.endpoint_view import endpoint_panel

guard()

st.title("Endpoint")
endpoint_panel(get_runtime())
