"""Settings: everything configurable, with where each value comes from."""

import streamlit as st

from zoe_panel.runtime import get_runtime
from zoe_panel.ui.boot import guard
from zoe_panel.ui.settings_view import settings_form

guard()

rt = get_runtime()
st.title("Settings")
st.caption(
    f"Saved to `{rt.settings.settings_file}`. Values set by `ZOE_*` environment variables are "
    "shown but cannot be changed here."
)
settings_form(rt)
