"""Access to the panel: a password (argon2 or bcrypt hash) whenever it is served beyond loopback.

The hash comes from ``ZOE_PASSWORD_HASH`` or ``.streamlit/secrets.toml`` (``[zoe] password_hash``,
written by ``python -m zoe_panel set-password``). Failed attempts are counted per client address
and lock it out for a while; a session expires after ``session_timeout_s`` of inactivity.

How lockout is keyed: by the client's IP address as the TCP connection shows it. Every client on
the panel's own machine (loopback) shares one bucket, "local". X-Forwarded-For is believed only
from a proxy the ``trusted_proxies`` setting names, and then only its right-most untrusted entry:
a client cannot pick its own address to get fresh attempts or lock out someone else.
"""

from __future__ import annotations

import ipaddress
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from zoe_panel.errors import AuthError
from zoe_panel.settings import write_private

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# Next to app.py, where Streamlit reads its secrets, whatever the current directory.
SECRETS = Path(__file__).resolve().parents[1] / ".streamlit" / "secrets.toml"


def is_loopback(address: str) -> bool:
    """'' and 0.0.0.0 / :: mean every interface: not loopback."""
    if address in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise AuthError("use a password of at least 8 characters")
    from argon2 import PasswordHasher

    return PasswordHasher().hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """argon2 ($argon2id$...) or bcrypt ($2b$...); both libraries compare in constant time."""
    if stored_hash.startswith("$argon2"):
        from argon2 import PasswordHasher
        from argon2.exceptions import InvalidHashError, VerificationError

        try:
            return bool(PasswordHasher().verify(stored_hash, password))
        except (VerificationError, InvalidHashError):
            return False
    if stored_hash.startswith(("$2a$", "$2b$", "$2y$")):
        import bcrypt

        try:
            return bool(bcrypt.checkpw(password.encode(), stored_hash.encode()))
        except ValueError:
            return False
    raise AuthError(
        "the stored password hash is neither argon2 nor bcrypt: set it again with python -m zoe_panel set-password"
    )


def password_hash(env_hash: str, secrets_file: Path = SECRETS) -> str:
    if env_hash:
        return env_hash
    try:
        with secrets_file.open("rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        return ""
    return str((data.get("zoe") or {}).get("password_hash", ""))


def write_password_hash(hashed: str, secrets_file: Path = SECRETS) -> Path:
    """Keep other sections of secrets.toml; replace ours. Owner-only permissions."""
    import tomli_w

    data: dict[str, object] = {}
    try:
        with secrets_file.open("rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        data = {}
    zoe = dict(data.get("zoe") or {})  # type: ignore[call-overload]
    zoe["password_hash"] = hashed
    data["zoe"] = zoe
    write_private(secrets_file, tomli_w.dumps(data).encode())
    return secrets_file


@dataclass
class _Attempts:
    failures: list[float] = field(default_factory=list)
    locked_until: float = 0.0
    in_flight: int = 0


class LockedOut(AuthError):
    """The client failed too often: refused without a check until the lockout ends."""


class LoginLimiter:
    """At most ``max_attempts`` failures per client in ``window_s``; then locked for ``lockout_s``.

    An attempt is reserved atomically before its password is checked, counting the attempts still
    being checked: twenty wrong passwords sent at once with three allowed get three checks, not
    twenty. At most ``max_checks`` hashes are computed at a time across all clients (an argon2
    check takes 64 MiB)."""

    def __init__(
        self, max_attempts: int = 5, lockout_s: float = 300.0, window_s: float = 600.0, max_checks: int = 2
    ) -> None:
        self.max_attempts = max_attempts
        self.lockout_s = lockout_s
        self.window_s = window_s
        self._by_client: dict[str, _Attempts] = {}
        self._lock = threading.Lock()
        self._checks = threading.BoundedSemaphore(max_checks)

    def check(self, client: str) -> None:
        with self._lock:
            a = self._by_client.get(client)
            if a and a.locked_until > time.time():
                wait = int(a.locked_until - time.time()) + 1
                raise LockedOut(f"too many failed sign-ins from {client}: locked for {wait} more seconds")

    def _reserve(self, client: str) -> _Attempts:
        now = time.time()
        with self._lock:
            a = self._by_client.setdefault(client, _Attempts())
            if a.locked_until > now:
                wait = int(a.locked_until - now) + 1
                raise LockedOut(f"too many failed sign-ins from {client}: locked for {wait} more seconds")
            a.failures = [t for t in a.failures if now - t < self.window_s]
            if len(a.failures) + a.in_flight >= self.max_attempts:
                raise AuthError(f"too many sign-in attempts at once from {client}: wait for the first ones")
            a.in_flight += 1
            return a

    def sign_in(self, client: str, stored_hash: str, password: str) -> tuple[bool, int]:
        """Check a password for ``client``: (ok, attempts left before a lockout). Raises AuthError
        when the client is locked out or already has its allowance in flight."""
        a = self._reserve(client)
        try:
            if not self._checks.acquire(timeout=30):
                raise AuthError("the panel is busy checking other sign-ins; try again in a moment")
            try:
                ok = verify_password(stored_hash, password)
            finally:
                self._checks.release()
        finally:
            with self._lock:
                a.in_flight -= 1
        if ok:
            self.succeeded(client)
            return True, self.max_attempts
        return False, self.failed(client)

    def failed(self, client: str) -> int:
        """Record a failure; return how many attempts are left before the lockout."""
        now = time.time()
        with self._lock:
            a = self._by_client.setdefault(client, _Attempts())
            a.failures = [t for t in a.failures if now - t < self.window_s] + [now]
            if len(a.failures) >= self.max_attempts:
                a.locked_until = now + self.lockout_s
                a.failures = []
                return 0
            return self.max_attempts - len(a.failures)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._by_client.pop(client, None)
