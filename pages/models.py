"""Models: every GGUF in the models folder with its real metadata."""

import streamlit as st

from zoe_panel.runtime import get_runtime
from zoe_panel.ui.models_view import model_rows

rt = get_runtime()
st.title("Models")
st.caption(f"Models folder: `{rt.store.root}`")

with st.spinner("Reading GGUF headers (cached after the first read)…"):
    rows, invalid = model_rows(rt)
if rows:
    st.dataframe(rows, key="models-table", hide_index=True)
else:
    st.info("No GGUF files here yet.")
for name, error in invalid:
    st.error(f"{name}: {error}")
