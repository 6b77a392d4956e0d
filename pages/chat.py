"""Chat: talk to the running engine, with streaming, Stop, parameters and measured speed."""

import streamlit as st

from zoe_panel.runtime import get_runtime
from zoe_panel.ui.boot import guard
from zoe_panel.ui.chat_view import (
    chat_controls,
    edit_box,
    engine_load_line,
    render_history,
    render_stats,
    reply,
    session,
)
from zoe_panel.ui.router_view import chat_model

guard()

st.title("Chat")
chat = session()
params, ready, why = chat_controls(chat)
model = chat_model(get_runtime()) if ready else ""
engine_load_line()

render_history(chat)
resend = st.session_state.pop("chat-pending-resend", "") or (edit_box(chat) if ready else None)
prompt = st.chat_input("Message the model" if ready else why, key="chat-input", disabled=not ready)
if resend:
    reply(chat, None, params, resend=True, model=model)
elif prompt:
    reply(chat, prompt, params, model=model)
render_stats(chat)
