"""Workers: llama.cpp rpc-server processes that hold part of a model split over several machines."""

import streamlit as st

from zoe_panel.runtime import get_runtime
from zoe_panel.ui.boot import guard
from zoe_panel.ui.workers_view import local_workers, probe_form, start_form

guard()

rt = get_runtime()
st.title("Workers")
st.caption(
    "A worker runs llama.cpp's rpc-server; the Engine page's *Split over RPC workers* spreads a model's "
    "layers over the workers and this machine. RPC has no authentication: trusted networks only."
)
start_form(rt)


@st.fragment(run_every=2.0)
def live() -> None:
    local_workers(rt)


live()
probe_form()
