"""Endpoint page: how a client reaches the running engine, and a check that it can."""

from __future__ import annotations

import streamlit as st

from zoe_panel.endpoint import client_check, model_id, reachable_urls, snippets
from zoe_panel.engine.apikey import engine_api_key, new_api_key
from zoe_panel.engine.base import EngineState, EngineStatus
from zoe_panel.engine.metrics import engine_load
from zoe_panel.errors import ZoePanelError
from zoe_panel.runtime import Runtime
from zoe_panel.ui.settings_view import apply
from zoe_panel.ui.widgets import md


def endpoint_panel(rt: Runtime) -> None:
    status = rt.engine.status()
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
    load = engine_load(status.base_url, spec.api_key)
    cap = f"{spec.n_predict} tokens" if spec.n_predict else "none (until the context is full)"
    st.caption(
        f"Generation cap for requests that set no max_tokens: {cap} (setting default_max_tokens) · "
        f"engine: {md(load.text())}"
    )
    examples = snippets(urls[0], mid, spec.api_key)
    tabs = st.tabs(list(examples))
    for tab, (name, code) in zip(tabs, examples.items(), strict=True):
        with tab:
            st.code(code, language="bash" if name.startswith("curl") else "python")
    _handoff_section(rt, status)
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


def _handoff_section(rt: Runtime, status: EngineStatus) -> None:
    """The drop-in provider for the Zoe assistant, and a check of the user's own client."""
    from zoe_panel.handoff.provider import provider_source

    with st.expander("Zoe assistant: drop-in provider and a check of your own client", expanded=False):
        try:
            source = provider_source(rt)
        except ZoePanelError as e:
            st.warning(md(e, inline=False))
            return
        st.download_button(
            "Download llamacpp_provider.py",
            source,
            file_name="llamacpp_provider.py",
            mime="text/x-python",
            key="endpoint-provider-download",
        )
        st.caption(
            "Same interface as Zoe's llm_provider.py (generate, generate_stream, get_llm_provider). "
            "Set ZOE_LLM_API_KEY to the key above."
        )
        path = st.text_input("Your client's module (a path on this machine)", key="endpoint-client-path")
        up = st.file_uploader("… or upload it", type=["py"], key="endpoint-client-upload")
        cls = st.text_input("Class (optional)", key="endpoint-client-class")
        if st.button("Check my client", key="endpoint-client-check"):
            with st.spinner("running your client against the engine…"):
                rows = _check_rows(rt, status, path, up, cls)
            if rows is not None:
                st.dataframe(rows, hide_index=True, key="endpoint-client-results")
                failed = [r for r in rows if r["result"] == "FAIL"]
                (st.error if failed else st.success)(f"{len(rows) - len(failed)}/{len(rows)} checks passed")


def _check_rows(rt: Runtime, status: EngineStatus, path: str, up: object, cls: str) -> list[dict[str, str]] | None:
    import tempfile
    from pathlib import Path

    from zoe_panel.handoff.clientcheck import check_client, measure_engine

    spec = status.spec
    if spec is None or status.base_url is None:
        return None
    with tempfile.TemporaryDirectory() as d:
        if up is not None:
            target = Path(d) / "client_under_test.py"
            target.write_bytes(up.getvalue())  # type: ignore[attr-defined]
        elif path.strip():
            target = Path(path.strip()).expanduser()
            if not target.is_file():
                st.error(md(f"{target} is not a file"))
                return None
        else:
            st.error("give a path or upload the module")
            return None
        facts = measure_engine(status.base_url, spec.api_key, spec.n_predict)
        checks = check_client(target, facts, class_name=cls.strip(), env={"ZOE_LLM_API_KEY": spec.api_key})
    return [{"check": c.name, "result": "pass" if c.ok else "FAIL", "detail": c.detail, "fix": c.fix} for c in checks]
