"""Prompt suites: replay the same prompts against different engine configs and compare the numbers."""

import streamlit as st

from zoe_panel.runtime import get_runtime
from zoe_panel.ui.boot import guard
from zoe_panel.ui.suites_view import comparison, editor, runner

guard()

rt = get_runtime()
st.title("Prompt suites")
suite = editor(rt)
runner(rt, suite)
st.subheader("Compare runs")
comparison(rt, suite.name if suite else "")
