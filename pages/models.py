"""Models: the library with real metadata; get, check, shrink and remove models."""

import streamlit as st

from zoe_panel.runtime import get_runtime
from zoe_panel.ui.boot import guard
from zoe_panel.ui.library_view import (
    convert_panel,
    hf_repo_panel,
    hub_panel,
    jobs_panel,
    manage_panel,
    upload_panel,
    upload_progress,
)
from zoe_panel.ui.models_view import hf_rows, model_rows
from zoe_panel.ui.router_view import is_router, models_panel
from zoe_panel.ui.widgets import md

guard()

rt = get_runtime()
st.title("Models")
st.caption(f"Models folder: {md(rt.store.root)}")

with st.spinner("Reading GGUF headers (cached after the first read)…"):
    rows, invalid = model_rows(rt)
if rows:
    st.dataframe(rows, key="models-table", hide_index=True)
else:
    st.info("No GGUF files here yet.")
for name, error in invalid:
    st.error(md(error if error.startswith(name) else f"{name}: {error}", inline=False))

folders, bad_folders = hf_rows(rt)
if folders or bad_folders:
    st.subheader("Hugging Face folders (vLLM)")
    if folders:
        with st.container(key="models-hf-table"):
            st.table(folders)  # a few rows: plain HTML, readable and searchable
    for name, error in bad_folders:
        st.error(md(error if error.startswith(name) else f"{name}: {error}", inline=False))

manage_panel(rt, [r["file"] for r in rows] + [r["folder"] for r in folders] + [n for n, _ in bad_folders])
if is_router(rt):
    models_panel(rt, "models")

st.subheader("Add a model")
hub_tab, vllm_tab, upload_tab, convert_tab = st.tabs(
    ["From Hugging Face", "Hugging Face for vLLM", "Upload", "Convert a checkpoint"]
)
with hub_tab:
    hub_panel(rt)
with vllm_tab:
    hf_repo_panel(rt)
with upload_tab:
    upload_panel(rt)
with convert_tab:
    convert_panel(rt)


@st.fragment(run_every=1.0)
def live_jobs() -> None:
    upload_progress()
    jobs_panel(rt)


live_jobs()
