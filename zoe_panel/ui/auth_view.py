"""The gate in front of every page: refusal on the LAN without a password, login, logout, timeout."""

from __future__ import annotations

import time

import streamlit as st

from zoe_panel.auth import LockedOut, is_loopback, password_hash
from zoe_panel.errors import AuthError
from zoe_panel.runtime import Runtime, get_runtime
from zoe_panel.ui.widgets import md
from zoe_panel.web.sessions import AUTHORIZED

SESSION_KEY = "zoe-auth"


def client_address() -> str:
    try:
        return str(st.context.ip_address or "local")
    except Exception:  # noqa: BLE001 - AppTest and some proxies have no address
        return "local"


def audit(rt: Runtime, action: str, outcome: str, target: str = "", detail: str = "") -> None:
    """Audit an action with the browser's address; never pass a secret as target or detail."""
    rt.history.audit(action, outcome, client=client_address(), target=target, detail=detail)


def bind_address() -> str:
    return str(st.get_option("server.address") or "")


def session_id() -> str:
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else ""


def grant_session() -> None:
    """Let this browser session use the HTTP routes behind the gate (uploads)."""
    if sid := session_id():
        AUTHORIZED.grant(sid)


def allowed(rt: Runtime) -> bool:
    ok = _allowed(rt)
    if ok:
        grant_session()
    elif sid := session_id():
        AUTHORIZED.revoke(sid)
    return ok


def _allowed(rt: Runtime) -> bool:
    hashed = password_hash(rt.settings.password_hash)
    if not hashed:
        return is_loopback(bind_address())
    session = st.session_state.get(SESSION_KEY)
    if not session:
        return False
    now = time.time()
    if now - session["last"] > rt.settings.session_timeout_s:
        st.session_state.pop(SESSION_KEY, None)
        st.session_state["zoe-auth-expired"] = True
        audit(rt, "session timeout", "signed out")
        return False
    session["last"] = now
    return True


def login_page() -> None:
    rt = get_runtime()
    hashed = password_hash(rt.settings.password_hash)
    if not hashed:
        st.title("Zoe Panel is not served on this address")
        st.error(
            f"The panel listens on {bind_address() or 'all interfaces'}, which other machines can reach, "
            "and no password is set. Nothing else is shown until one is."
        )
        st.markdown(
            "Set a password, then restart the panel:\n\n```bash\n.venv/bin/python -m zoe_panel set-password\n"
            "```\n\nor set `ZOE_PASSWORD_HASH` to an argon2 or bcrypt hash. To use the panel only on this "
            "machine, serve it on 127.0.0.1 (the default: `make run`)."
        )
        return
    st.title("Sign in to Zoe Panel")
    if st.session_state.pop("zoe-auth-expired", False):
        st.info("Your session expired; sign in again.")
    with st.form("login-form"):
        password = st.text_input("Password", type="password", key="login-password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if not submitted:
        return
    client = client_address()
    try:
        ok, left = rt.login_limiter.sign_in(client, hashed, password)
    except AuthError as e:
        audit(rt, "login", "locked out" if isinstance(e, LockedOut) else "refused", detail=str(e)[:200])
        st.error(md(e, inline=False))
        return
    if ok:
        st.session_state[SESSION_KEY] = {"at": time.time(), "last": time.time()}
        grant_session()
        audit(rt, "login", "ok")
        st.rerun()
    audit(rt, "login", "failed")
    st.error(
        "Wrong password."
        + (
            f" {left} attempt(s) left before a lockout."
            if left
            else f" Locked out for {int(rt.settings.login_lockout_s)} s."
        )
    )


def logout_button(rt: Runtime) -> None:
    if SESSION_KEY in st.session_state and st.button("Sign out", key="logout"):
        st.session_state.pop(SESSION_KEY, None)
        if sid := session_id():
            AUTHORIZED.revoke(sid)
        audit(rt, "logout", "ok")
        st.rerun()
