"""Which Streamlit sessions have passed the sign-in gate, for the HTTP routes to check.

Streamlit's upload endpoint takes a session id from the URL; any client holding an open websocket
session (the sign-in page is one) could upload to it. The gate (ui/auth_view.allowed) grants the
session here each time it lets a page render; the guards refuse uploads from any other session
before a byte of the body is read.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time

GRANT_S = 900.0  # a grant outlives the page's rerun rhythm; refreshed on every allowed rerun


class AuthorizedSessions:
    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()
        self._key = secrets.token_bytes(32)  # signs upload tokens; new per process

    def grant(self, session_id: str, ttl_s: float = GRANT_S) -> None:
        with self._lock:
            self._until[session_id] = time.monotonic() + ttl_s
            if len(self._until) > 1000:  # forget expired ones now and then
                now = time.monotonic()
                self._until = {k: v for k, v in self._until.items() if v > now}

    def revoke(self, session_id: str) -> None:
        with self._lock:
            self._until.pop(session_id, None)

    def allows(self, session_id: str) -> bool:
        with self._lock:
            return self._until.get(session_id, 0.0) > time.monotonic()

    def token(self, session_id: str, ttl_s: float = 3600.0) -> str:
        """A bearer token for the upload route, bound to this session and an expiry."""
        expires = int(time.time() + ttl_s)
        mac = hmac.new(self._key, f"{session_id}:{expires}".encode(), hashlib.sha256).hexdigest()
        return f"{session_id}:{expires}:{mac}"

    def check_token(self, token: str) -> str | None:
        """The session id a valid, unexpired token names, if that session is still signed in."""
        try:
            session_id, expires, mac = token.rsplit(":", 2)
            deadline = int(expires)
        except ValueError:
            return None
        want = hmac.new(self._key, f"{session_id}:{deadline}".encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, mac) or deadline < time.time() or not self.allows(session_id):
            return None
        return session_id


AUTHORIZED = AuthorizedSessions()
