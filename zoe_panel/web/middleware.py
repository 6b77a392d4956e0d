"""ASGI middleware in front of Streamlit: the client's real address, and the upload gate.

Both run before any Streamlit code, on raw ASGI scopes, so a refused request costs no body read.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from zoe_panel.web.sessions import AUTHORIZED, AuthorizedSessions

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Streamlit's own upload endpoint: /_stcore/upload_file/<session id>/<file id> (after baseUrlPath)
STREAMLIT_UPLOAD = re.compile(r"/_stcore/upload_file/([^/]+)/[^/]+/?$")


async def respond(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def parse_networks(text: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """'10.0.0.5, 192.168.1.0/24' -> networks; ValueError naming the bad entry."""
    nets = []
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"trusted_proxies: {item!r} is not an IP address or network") from None
    return nets


def _in(nets: list[Any], host: str) -> bool:
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(addr in n for n in nets)


def forwarded_client(peer: str, forwarded_for: str, nets: list[Any]) -> str:
    """The client's address: the TCP peer, unless the peer is a trusted proxy; then the right-most
    X-Forwarded-For entry that is not itself a trusted proxy (entries further left are whatever
    the client chose to send, so they are never believed)."""
    if not nets or not _in(nets, peer) or not forwarded_for:
        return peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if not _in(nets, hop):
            return hop
    return peer


class ClientAddress:
    """Rewrite ``scope['client']`` from X-Forwarded-For only for peers the setting names.

    uvicorn's own header handling is turned off (the launcher sets FORWARDED_ALLOW_IPS to nothing:
    its default trusts any loopback peer), so the scope holds the TCP peer when this runs."""

    def __init__(self, app: ASGIApp, trusted_proxies: str = "") -> None:
        self.app = app
        self.nets = parse_networks(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.nets and scope["type"] in ("http", "websocket") and scope.get("client"):
            headers = dict(scope.get("headers") or [])
            xff = headers.get(b"x-forwarded-for", b"").decode("latin-1")
            peer = scope["client"][0]
            client = forwarded_client(peer, xff, self.nets)
            if client != peer:
                scope = dict(scope)
                scope["client"] = (client, 0)
        await self.app(scope, receive, send)


class UploadGuard:
    """Streamlit's upload endpoint keeps every body in memory and accepts any session holding the
    XSRF cookie, signed in or not. Refuse sessions that have not passed the sign-in gate, and
    bodies above ``max_bytes``, before reading any of it (model files use the panel's own
    streaming route instead)."""

    def __init__(self, app: ASGIApp, max_bytes: int, sessions: AuthorizedSessions = AUTHORIZED) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") in ("PUT", "POST"):
            m = STREAMLIT_UPLOAD.search(scope.get("path", ""))
            if m:
                if not self.sessions.allows(m.group(1)):
                    await respond(send, 403, "sign in first: this session may not upload")
                    return
                length = dict(scope.get("headers") or []).get(b"content-length", b"")
                if not length.isdigit():
                    await respond(send, 411, "uploads need a Content-Length")
                    return
                if int(length) > self.max_bytes:
                    await respond(
                        send, 413, f"at most {self.max_bytes // 2**20} MiB here; models go through the Upload tab"
                    )
                    return
        await self.app(scope, receive, send)
