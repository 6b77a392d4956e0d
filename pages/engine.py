"""Engine: pick a model and settings, start and stop llama.cpp, watch its state and log."""

import streamlit as st

from zoe_panel.engine import defaults, flavors
from zoe_panel.engine.base import CACHE_TYPES, FLASH_ATTN
from zoe_panel.models.fit import Verdict
from zoe_panel.runtime import get_runtime
from zoe_panel.ui.boot import guard
from zoe_panel.ui.docker_view import backend_panel, export_panel
from zoe_panel.ui.engine_view import (
    apply_preset,
    estimate_panel,
    form_spec,
    init_form,
    live_status,
    remember_choice,
    save_preset,
    speculative_section,
    start_from_form,
    stop_engine,
    vllm_panel,
)
from zoe_panel.ui.widgets import attempt, md

guard()

rt = get_runtime()
st.title("Engine")

models = [e for e in rt.store.entries() if e.ok]
folders = [e.name for e in rt.store.hf_entries() if e.ok and not e.made_from]  # downloaded, for vLLM
if not models and not folders:
    st.warning(f"No usable GGUF model in {md(rt.store.root)}. Add one on the Models page.")
init_form(rt, [e.name for e in models] + folders)

c1, c2, c3 = st.columns(3)
with c1:
    st.selectbox(
        "Model",
        [e.name for e in models] + folders,
        key="engine-model",
        on_change=apply_preset,
        args=(rt,),
        help="GGUF files (every engine) and downloaded Hugging Face folders (.hf, vLLM only).",
    )
    st.selectbox("Flavour", flavors.names(), key="engine-flavor", on_change=remember_choice)
    if flavors.get(st.session_state["engine-flavor"]).memory_model == "vllm":
        vllm_panel(rt, st.session_state.get("engine-model"), st.session_state["engine-flavor"])
    if flavors.get(st.session_state["engine-flavor"]).multi_model:
        st.caption("Router mode serves every model of the folder, each with its own preset.")
        st.number_input("Models loaded at once (at most)", 1, 16, 4, key="engine-models-max")
        st.number_input("Memory budget MiB (0 = available minus the floor)", 0, 1 << 20, 0, key="engine-budget-mib")
with c2:
    st.number_input("Context size (tokens)", 256, 4_194_304, step=256, key="engine-ctx")
    st.number_input("GPU layers (999 = all)", 0, 999, key="engine-ngl")
with c3:
    st.selectbox("KV cache type", CACHE_TYPES, key="engine-cache-type")
    st.number_input(
        "Parallel slots",
        1,
        64,
        key="engine-parallel",
        help="Slots share one unified KV cache: memory does not grow with slots.",
    )
with st.expander("Advanced"):
    a1, a2, a3 = st.columns(3)
    a1.number_input("Port", 1, 65535, key="engine-port")
    a2.number_input("Threads (0 = default)", 0, 256, key="engine-threads")
    a3.selectbox("Flash attention", FLASH_ATTN, key="engine-flash-attn")
    m1, m2 = st.columns(2)
    m1.number_input("Prompt cache MiB (-1 = sized from free memory, 0 = off)", -1, 1 << 20, key="engine-cache-ram")
    m2.number_input("Context checkpoints per slot", 0, 1024, key="engine-checkpoints")
    if flavors.get(str(st.session_state.get("engine-flavor", defaults.FLAVOR))).memory_model == "vllm":
        st.number_input("vLLM KV space MiB (reserved up front)", 256, 1 << 22, 1024, step=256, key="engine-kv-space")
    st.text_input("Extra llama-server arguments", key="engine-extra", placeholder="--temp 0.7 --mlock")
with st.expander("Speculative decoding (draft)", expanded=st.session_state.get("engine-spec-mode", "off") != "off"):
    speculative_section(rt, [e.name for e in models])
with st.expander("Split over RPC workers", expanded=bool(st.session_state.get("engine-rpc"))):
    r1, r2, r3 = st.columns(3)
    r1.text_input("RPC workers (host:port, …)", key="engine-rpc", placeholder="192.168.1.20:50052")
    r2.text_input(
        "Tensor split (per worker, then this machine)",
        key="engine-ts",
        placeholder="empty = by free memory",
        help="One share per worker in the order above, then one for this machine, e.g. 1,1,2.",
    )
    r3.text_input(
        "Free memory by hand (host:port=GiB, …)",
        key="engine-worker-free",
        help="Otherwise each worker's free memory is what it reports.",
    )
    st.caption("Start workers on the Workers page (or `python -m zoe_panel rpc-worker start` on each board).")
st.caption(st.session_state.get("engine-preset-note", ""))

arch = next((e.info.architecture for e in models if e.name == st.session_state.get("engine-model") and e.info), None)
backend = backend_panel(rt, arch, st.session_state.get("engine-flavor"))
verdict = estimate_panel(rt, st.session_state)
anyway = True
if verdict == Verdict.WONT_FIT:
    anyway = st.checkbox("Start anyway (predicted not to fit)", key="engine-start-anyway")

b1, b2, b3, _ = st.columns([1, 1, 1.4, 3])
started = b1.button("Start", key="engine-start", type="primary", disabled=not (models or folders) or not anyway)
if started and attempt(lambda: start_from_form(rt, st.session_state, backend)):
    st.toast("Engine starting…")
if b2.button("Stop", key="engine-stop") and attempt(lambda: stop_engine(rt)):
    st.toast("Engine stopped.")
if b3.button("Save as preset", key="engine-save-preset") and attempt(lambda: save_preset(rt, st.session_state)):
    st.toast("Preset saved for this model.")

export_panel(rt, attempt(lambda: form_spec(rt, st.session_state)))


@st.fragment(run_every=1.0)
def live() -> None:
    live_status(rt)


live()
