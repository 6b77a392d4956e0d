"""Engine: pick a model and settings, start and stop llama.cpp, watch its state and log."""

import streamlit as st

from zoe_panel.engine.base import CACHE_TYPES, FLASH_ATTN
from zoe_panel.runtime import get_runtime
from zoe_panel.settings import FLAVORS
from zoe_panel.ui.docker_view import backend_panel, export_panel
from zoe_panel.ui.engine_view import estimate_panel, form_spec, live_status, start_from_form
from zoe_panel.ui.widgets import attempt

rt = get_runtime()
st.title("Engine")

models = [e for e in rt.store.list() if e.ok]
if not models:
    st.warning(f"No usable GGUF model in {rt.store.root}. Add one on the Models page.")

names = [e.name for e in models]
c1, c2, c3 = st.columns(3)
with c1:
    st.selectbox("Model", names, key="engine-model")
    st.selectbox("Flavour", FLAVORS, key="engine-flavor", index=FLAVORS.index(rt.settings.flavor))
with c2:
    st.number_input("Context size (tokens)", 256, 1_048_576, 4096, step=256, key="engine-ctx")
    st.number_input("GPU layers (999 = all)", 0, 999, 999, key="engine-ngl")
with c3:
    st.selectbox("KV cache type", CACHE_TYPES, index=CACHE_TYPES.index("f16"), key="engine-cache-type")
    st.number_input(
        "Parallel slots",
        1,
        64,
        4,
        key="engine-parallel",
        help="Slots share one unified KV cache: memory does not grow with slots.",
    )
with st.expander("Advanced"):
    a1, a2, a3 = st.columns(3)
    a1.number_input("Port", 1, 65535, rt.settings.engine_port, key="engine-port")
    a2.number_input("Threads (0 = default)", 0, 256, 0, key="engine-threads")
    a3.selectbox("Flash attention", FLASH_ATTN, key="engine-flash-attn")

arch = next((e.info.architecture for e in models if e.name == st.session_state.get("engine-model") and e.info), None)
backend = backend_panel(rt, arch)
verdict = estimate_panel(rt, st.session_state)
anyway = True
if verdict == "will not fit":
    anyway = st.checkbox("Start anyway (predicted not to fit)", key="engine-start-anyway")

b1, b2, _ = st.columns([1, 1, 4])
started = b1.button("Start", key="engine-start", type="primary", disabled=not models or not anyway)
if started and attempt(lambda: start_from_form(rt, st.session_state, backend)):
    st.toast("Engine starting…")
if b2.button("Stop", key="engine-stop") and attempt(lambda: rt.controller.stop()):
    st.toast("Engine stopped.")


export_panel(rt, attempt(lambda: form_spec(rt, st.session_state)))


@st.fragment(run_every=1.0)
def live() -> None:
    live_status(rt)


live()
