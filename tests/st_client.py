"""A bare Streamlit client, as an attacker on the LAN would write one: it opens a websocket session
with an XSRF cookie and token it made itself, starts a script run, and learns its session id.
Used to prove that such a session (on the sign-in page) can no longer upload."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.web.server.starlette.starlette_app_utils import generate_xsrf_token_string
from websockets.sync.client import connect

XSRF_COOKIE = "_streamlit_xsrf"


@contextmanager
def session(base_url: str, timeout_s: float = 30.0) -> Iterator[tuple[str, str, Any]]:
    """(session id, xsrf token, websocket) of a fresh session; the token doubles as its cookie."""
    token = generate_xsrf_token_string()
    ws_url = base_url.replace("http://", "ws://") + "/_stcore/stream"
    headers = {"Cookie": f"{XSRF_COOKIE}={token}", "Origin": base_url}
    with connect(ws_url, subprotocols=["streamlit", token], additional_headers=headers, open_timeout=timeout_s) as ws:
        msg = BackMsg()
        msg.rerun_script.query_string = ""
        msg.rerun_script.page_script_hash = ""
        ws.send(msg.SerializeToString())
        while True:
            fwd = ForwardMsg.FromString(ws.recv(timeout=timeout_s))
            if fwd.HasField("new_session"):
                yield fwd.new_session.initialize.session_id, token, ws
                return
