"""Router mode on the pages: the models behind the engine, loaded and unloaded through the panel's
admission (Engine and Models pages), and the model a chat talks to (Chat page)."""

from __future__ import annotations

import streamlit as st

from zoe_panel.engine import flavors
from zoe_panel.engine.base import EngineState
from zoe_panel.errors import ZoePanelError
from zoe_panel.runtime import Runtime
from zoe_panel.ui.widgets import fmt_bytes, md

STATE_BADGE = {
    "loaded": ":green-badge[loaded]",
    "loading": ":orange-badge[loading]",
    "unloaded": ":gray-badge[unloaded]",
    "failed": ":red-badge[failed]",
    "sleeping": ":blue-badge[sleeping]",
}


def is_router(rt: Runtime) -> bool:
    st_ = rt.engine.status()
    return st_.state == EngineState.READY and st_.spec is not None and flavors.get(st_.spec.flavor).multi_model


def start_router(rt: Runtime, models_max: int, budget_mib: int) -> None:
    """Write the presets file from the library's presets, then start the router over the folder."""
    from zoe_panel.ui.auth_view import client_address

    if budget_mib:
        rt.admission.set_run_budget(budget_mib)
    rt.admission.write_presets()
    rt.engine.start(rt.router_spec(models_max=models_max), client=client_address())


def models_panel(rt: Runtime, where: str) -> None:
    """Each model's state and predicted memory, with Load (after admission) and Unload."""
    from zoe_panel.ui.auth_view import client_address

    try:
        slots = rt.engine.models()
    except ZoePanelError as e:
        st.warning(md(e, inline=False))
        return
    if not slots:
        return
    with st.container(key=f"{where}-router-models", border=True):
        st.markdown("**Models behind the router** (loaded by the panel after its memory admission)")
        for i, slot in enumerate(slots):
            try:
                predicted = fmt_bytes(rt.predict_model(slot.name))
            except ZoePanelError:
                predicted = "?"
            c = st.columns([4, 1.4, 1.4, 1, 1])
            c[0].markdown(md(slot.name))
            c[1].markdown(STATE_BADGE.get(slot.state, md(slot.state)))
            c[2].caption(f"{predicted} predicted")
            if c[3].button("Load", key=f"{where}-load-{i}", disabled=slot.state in ("loaded", "loading")):
                _act(lambda n=slot.name: rt.engine.load_model(n, admit=rt.admission, client=client_address()))
                if rt.admission.decisions:
                    st.toast(md(rt.admission.decisions[-1].text()))
            if c[4].button("Unload", key=f"{where}-unload-{i}", disabled=slot.state != "loaded"):
                _act(lambda n=slot.name: rt.engine.unload_model(n, client=client_address()))


def _act(fn: object) -> None:
    try:
        fn()  # type: ignore[operator]
    except ZoePanelError as e:
        st.error(md(e, inline=False))


def chat_model(rt: Runtime) -> str:
    """For a router: the model this chat talks to (loaded on demand, through the admission); '' otherwise."""
    if not is_router(rt):
        return ""
    slots = rt.engine.models()
    names = [s.name for s in slots]
    if not names:
        return ""
    name = str(st.selectbox("Model", names, key="chat-model") or names[0])
    state = next((s.state for s in slots if s.name == name), "unloaded")
    if state != "loaded":
        st.caption(f"{md(name)} is {state}.")
        if st.button(f"Load {name}", key="chat-load-model"):
            _act(lambda: rt.engine.load_model(name, admit=rt.admission))
    return name
