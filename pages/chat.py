"""Chat: talk to the running engine, with streaming, Stop, parameters and measured speed."""

import streamlit as st

from zoe_panel.ui.chat_view import chat_controls, render_history, render_stats, reply, session

st.title("Chat")
chat = session()
params, ready, why = chat_controls(chat)

render_history(chat)
prompt = st.chat_input("Message the model" if ready else why, key="chat-input", disabled=not ready)
if prompt:
    reply(chat, prompt, params)
render_stats(chat)
