"""Audit log: who did what, from where, with what outcome (no secrets are ever logged)."""

import streamlit as st

from zoe_panel.runtime import get_runtime
from zoe_panel.ui.boot import guard
from zoe_panel.ui.widgets import audit_rows

guard()

rt = get_runtime()
st.title("Audit log")
rows = audit_rows(rt)
if rows:
    st.dataframe(rows, hide_index=True, key="audit-table")
else:
    st.info("Nothing recorded yet.")
