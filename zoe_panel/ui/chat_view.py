"""Chat page pieces. The conversation lives in ChatSession (per tab, in session_state)."""

from __future__ import annotations

import time
from typing import Any

import streamlit as st

from zoe_panel.chat import ChatDelta, ChatParams, ChatStream
from zoe_panel.chat_session import ChatSession, ChatTurn, coalesce, stats_line
from zoe_panel.engine import flavors
from zoe_panel.engine.base import EngineState
from zoe_panel.engine.metrics import engine_load
from zoe_panel.errors import ZoePanelError
from zoe_panel.runtime import get_runtime
from zoe_panel.ui.widgets import md, session_get


def session() -> ChatSession:
    chat: ChatSession = session_get("chat", ChatSession)
    return chat


def _params() -> ChatParams:
    with st.sidebar:
        st.subheader("Parameters")
        temperature = st.slider("Temperature", 0.0, 2.0, 0.7, 0.05, key="chat-temperature")
        max_tokens = st.number_input("Max tokens", 1, 32768, 256, key="chat-max-tokens")
        c1, c2 = st.columns(2)
        top_p = c1.number_input("top_p", 0.0, 1.0, 0.95, 0.01, key="chat-top-p")
        top_k = c2.number_input("top_k", 0, 1000, 40, key="chat-top-k")
        min_p = c1.number_input("min_p", 0.0, 1.0, 0.05, 0.01, key="chat-min-p")
        repeat = c2.number_input("repeat penalty", 0.5, 2.0, 1.0, 0.01, key="chat-repeat-penalty")
        seed = st.number_input("Seed (-1 = random)", -1, 2**31 - 1, -1, key="chat-seed")
        stops = st.text_input("Stop strings (comma separated)", key="chat-stop-strings")
    return ChatParams(
        temperature=float(temperature),
        max_tokens=int(max_tokens),
        top_p=float(top_p),
        top_k=int(top_k),
        min_p=float(min_p),
        repeat_penalty=float(repeat),
        seed=None if seed < 0 else int(seed),
        stop=tuple(s.strip() for s in stops.split(",") if s.strip()),
    )


def chat_controls(chat: ChatSession) -> tuple[ChatParams, bool, str]:
    rt = get_runtime()
    status = rt.engine.status()
    ready = status.state == EngineState.READY
    why = "" if ready else f"Engine is {status.state.value}: start it on the Engine page"
    with st.sidebar:
        chat.system = st.text_area("System prompt", chat.system, key="chat-system")
    params = _params()
    c = st.columns([1, 1.3, 1, 1.3, 1.6, 2])
    if c[0].button("Stop", key="chat-stop", help="Stop the reply being written"):
        chat.stop()
    regen = c[1].button("Regenerate", key="chat-regenerate", disabled=not ready)
    if c[2].button("Clear", key="chat-clear"):
        chat.clear()
    c[3].download_button("Export JSON", chat.to_json(), "chat.json", "application/json", key="chat-export-json")
    c[4].download_button("Export Markdown", chat.to_markdown(), "chat.md", "text/markdown", key="chat-export-md")
    if regen:
        st.session_state["chat-pending-resend"] = chat.last_user() if chat.regenerate() else ""
    if not ready:
        st.info(why)
    return params, ready, why


def edit_box(chat: ChatSession) -> str | None:
    """Edit the last question and send it again; returns the new text when Resend is pressed."""
    last = chat.last_user()
    if not last:
        return None
    with st.expander("Edit the last message and resend"):
        text = st.text_area("Message", last, key="chat-edit-text")
        if st.button("Resend", key="chat-resend"):
            try:
                chat.edit_last(text)
            except ZoePanelError as e:
                st.error(md(e, inline=False))
                return None
            return text
    return None


@st.fragment(run_every=2.0)
def engine_load_line() -> None:
    rt = get_runtime()
    st_ = rt.engine.status()
    if st_.state == EngineState.READY and st_.base_url and st_.spec and not flavors.get(st_.spec.flavor).multi_model:
        with st.container(key="chat-engine-load"):
            st.caption("Engine: " + engine_load(st_.base_url, st_.spec.api_key).text())


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


def reply(chat: ChatSession, prompt: str | None, params: ChatParams, *, resend: bool = False, model: str = "") -> None:
    """Ask (or, with ``resend``, answer the last question again) and stream the answer; ``model``
    names the router's model to ask (loaded ones only: the router does not autoload)."""
    rt = get_runtime()
    if model:
        rt.admission.touch(model)
    try:
        if not resend:
            chat.ask(prompt or "")
        client = rt.chat_client()
    except ZoePanelError as e:
        st.error(md(e, inline=False))
        return
    if not resend:
        _render_turn(chat.turns[-1])
    status = rt.engine.status()
    progress_ok = status.spec is not None and flavors.get(status.spec.flavor).streams_prompt_progress
    live = st.empty()
    last_draw = [0.0]

    def on_event(stream: ChatStream, delta: ChatDelta) -> None:
        now = time.monotonic()
        if delta.kind == "progress" and delta.progress:
            p = delta.progress
            live.caption(
                f"processing the prompt: {p.get('processed', 0)}/{p.get('total', 0)} tokens "
                f"({p.get('cache', 0)} from cache)"
            )
        elif now - last_draw[0] > 0.25:  # a few redraws a second, not one per token
            s = stream.live()
            live.caption(f"{s['elapsed_s']:.1f} s · {int(s['tokens'])} tokens · {s['tokens_per_s']:.1f} tok/s")
            last_draw[0] = now

    with st.chat_message("assistant"):
        window = rt.energy_window()
        try:
            extra = {"model": model} if model else {}
            text = chat.stream_text(client, params, on_event=on_event, return_progress=progress_ok, **extra)
            # a bounded redraw rate: the panel and the browser re-render the whole reply on each piece
            st.write_stream(coalesce(text, rt.settings.chat_ui_hz))
        finally:
            last = chat.last_assistant()
            if last is not None and last.stats:
                from zoe_panel.telemetry.power import power_stats

                last.stats.update(power_stats(window.stop(), last.stats.get("completion_tokens")))
                rt.history.add_chat_stats(status.run_id, last.stats)  # the run's chat throughput, for History
        live.empty()
        if last is not None and last.error:
            st.error(last.error)


def render_stats(chat: ChatSession) -> None:
    last = chat.last_assistant()
    with st.container(key="chat-stats"):
        if last is None or not last.stats:
            return
        line = stats_line(last.stats)
        ceiling = _ceiling(last.stats)
        st.caption(line + (f" · {ceiling}" if ceiling else ""))


def _ceiling(stats: dict[str, Any]) -> str:
    rate = stats.get("gen_tokens_per_s")
    if not rate:
        return ""
    try:
        found = get_runtime().ceiling(stats)
    except Exception:  # noqa: BLE001 - the ceiling is extra information; never break the page for it
        return ""
    if not found or not found[0]:
        return ""
    ceiling, bw = found
    return (
        f"{100 * rate / ceiling:.0f} % of the {ceiling:.0f} tok/s bandwidth ceiling ({bw.gbps:.0f} GB/s, {bw.source})"
    )
