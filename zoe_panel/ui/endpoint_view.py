"""Endpoint page: how a client reaches the running engine, and a check that it can."""

from __future__ import annotations

import streamlit as st

from zoe_panel.endpoint import client_check, model_id, reachable_urls, snippets
from zoe_panel.engine.apikey import engine_api_key, new_api_key
from zoe_panel.engine.base import EngineState
from zoe_panel.errors import ZoePanelError
from zoe_panel.runtime import Runtime
from zoe_panel.ui.settings_view import apply
from zoe_panel.ui.widgets import md


def endpoint_panel(rt: Runtime) -> None:
    status = rt.controller.status()
    spec = status.spec
    if status.state != EngineState.READY or spec is None or status.base_url is None:
        st.info(f"Engine is {status.state.value}: start it on the Engine page to hand it to clients.")
        _key_section(rt, spec.api_key if spec else engine_api_key(rt.settings))
        return
    urls, note = reachable_urls(spec.host, spec.port)
    try:
        mid = model_id(status.base_url, spec.api_key)
    except Exception as e:  # noqa: BLE001 - shown, not raised: the page must render
        mid = spec.alias or spec.model_name
        st.warning(f"/v1/models did not answer: {md(e)}")
    with st.container(key="endpoint-info", border=True):
        st.markdown("**Base URL** (OpenAI-compatible): " + " · ".join(f"`{u}`" for u in urls))
        if note:
            st.caption(note)
        st.markdown("**Model id:**")
        st.code(mid, language=None)
    _key_section(rt, spec.api_key)
    examples = snippets(urls[0], mid, spec.api_key)
    tabs = st.tabs(list(examples))
    for tab, (name, code) in zip(tabs, examples.items(), strict=True):
        with tab:
            st.code(code, language="bash" if name.startswith("curl") else "python")
    if st.button("Client check", key="endpoint-check", type="primary"):
        with st.spinner("sending the requests a client sends…"):
            results = client_check(status.base_url, spec.api_key)
        rows = [{"check": r.name, "result": "pass" if r.ok else "FAIL", "detail": r.detail} for r in results]
        st.dataframe(rows, hide_index=True, key="endpoint-results")
        (st.success if all(r.ok for r in results) else st.error)(
            f"{sum(r.ok for r in results)}/{len(results)} checks passed"
        )


def _key_section(rt: Runtime, key: str) -> None:
    if key:
        show = st.checkbox("Show API key", key="endpoint-show-key")
        st.code(key if show else key[:6] + "…" + "*" * 12, language=None)
        st.caption("Clients send it as `Authorization: Bearer <key>`; the snippets read it from $ZOE_API_KEY.")
    else:
        st.caption("No API key: anyone who can reach the engine's port can use it.")
    if st.button("Generate a new API key", key="endpoint-generate-key"):
        try:
            apply(rt, {"engine_api_key": new_api_key()})
            st.info("Saved. It applies from the next engine start.")
        except ZoePanelError as e:
            st.error(md(e, inline=False))
