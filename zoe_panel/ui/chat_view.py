"""Chat page pieces. The conversation lives in ChatSession (per tab, in session_state)."""

from __future__ import annotations

import streamlit as st

from zoe_panel.chat import ChatParams
from zoe_panel.chat_session import ChatSession, ChatTurn, stats_line
from zoe_panel.engine.base import EngineState
from zoe_panel.errors import ZoePanelError
from zoe_panel.runtime import get_runtime
from zoe_panel.ui.widgets import session_get


def session() -> ChatSession:
    chat: ChatSession = session_get("chat", ChatSession)
    return chat


def chat_controls(chat: ChatSession) -> tuple[ChatParams, bool, str]:
    rt = get_runtime()
    status = rt.controller.status()
    ready = status.state == EngineState.READY
    why = "" if ready else f"Engine is {status.state.value}: start it on the Engine page"
    with st.sidebar:
        st.subheader("Parameters")
        chat.system = st.text_area("System prompt", chat.system, key="chat-system")
        temperature = st.slider("Temperature", 0.0, 2.0, 0.7, 0.05, key="chat-temperature")
        max_tokens = st.number_input("Max tokens", 1, 32768, 256, key="chat-max-tokens")
    c1, c2, _ = st.columns([1, 1, 6])
    c1.button("Stop", key="chat-stop", help="Stop the reply being written")
    if c2.button("Clear", key="chat-clear"):
        chat.clear()
    if not ready:
        st.info(why)
    return ChatParams(temperature=float(temperature), max_tokens=int(max_tokens)), ready, why


def _render_turn(turn: ChatTurn) -> None:
    with st.chat_message(turn.role):
        if turn.reasoning:
            with st.expander("reasoning"):
                st.markdown(turn.reasoning)
        st.markdown(turn.content or ("_(no text)_" if turn.role == "assistant" else ""))
        if turn.stopped:
            st.caption("stopped")
        if turn.error:
            st.error(turn.error)


def render_history(chat: ChatSession) -> None:
    for turn in chat.turns:
        _render_turn(turn)


def reply(chat: ChatSession, prompt: str, params: ChatParams) -> None:
    try:
        chat.ask(prompt)
        client = get_runtime().chat_client()
    except ZoePanelError as e:
        st.error(str(e))
        return
    _render_turn(chat.turns[-1])
    rt = get_runtime()
    run_id = rt.controller.status().run_id
    with st.chat_message("assistant"):
        try:
            st.write_stream(chat.stream_text(client, params))
        finally:
            last = chat.last_assistant()
            if last is not None and last.stats and last.role == "assistant":
                rt.history.add_chat_stats(run_id, last.stats)  # the run's chat throughput, for History
        if last is not None and last.error:
            st.error(last.error)


def render_stats(chat: ChatSession) -> None:
    last = chat.last_assistant()
    with st.container(key="chat-stats"):
        if last is not None and last.stats:
            st.caption(stats_line(last.stats))
