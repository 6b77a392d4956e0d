"""Pages run only inside app.py's navigation (and so behind its sign-in gate).

Streamlit can run a script of the pages/ folder by itself: the very first request of a fresh server
to a deep link such as /engine, and some reruns. Every page therefore starts with ``guard()``:
outside app.py's run it sends a session that never ran app.py through it, and otherwise applies
the same sign-in gate itself.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import streamlit as st

_local = threading.local()
DEEP_LINK = "zoe-deep-link"
APP_SEEN = "zoe-app-seen"


@contextmanager
def app_run() -> Iterator[None]:
    """Wrap app.py's ``nav.run()``: the page it runs executes in this same script thread."""
    _local.active = True
    try:
        yield
    finally:
        _local.active = False


def running_in_app() -> bool:
    return bool(getattr(_local, "active", False))


def mark_app_seen() -> None:
    st.session_state[APP_SEEN] = True


def guard() -> None:
    """First line of every page: only ever render behind the sign-in gate."""
    if running_in_app():
        return
    if not st.session_state.get(APP_SEEN):
        # This session's very first run came straight to a page: go through app.py, then on to it.
        caller = sys._getframe(1).f_globals.get("__file__", "")
        st.session_state[DEEP_LINK] = Path(caller).name
        st.switch_page("app.py")
    # A rerun that Streamlit ran on the page alone (it keeps the widget event): gate it here.
    from zoe_panel.runtime import get_runtime
    from zoe_panel.ui.auth_view import allowed, login_page

    if not allowed(get_runtime()):
        login_page()
        st.stop()


def follow_deep_link(pages: Sequence[Any]) -> None:
    """In app.py, after st.navigation: go on to the page a deep link asked for before the gate."""
    target = st.session_state.pop(DEEP_LINK, None)
    if not target:
        return
    for page in pages:
        if getattr(page, "url_path", None) == Path(target).stem:
            st.switch_page(page)


def startup_error(e: Exception) -> None:
    """The panel cannot start (a damaged settings or state file). On loopback the message says
    which file and how to reset it; to the LAN, before any sign-in, it names no path."""
    import logging

    from zoe_panel.auth import is_loopback
    from zoe_panel.ui.widgets import md

    logging.getLogger(__name__).error("the panel cannot start: %s", e)
    st.title("Zoe Panel cannot start")
    if is_loopback(str(st.get_option("server.address") or "")):
        st.error(md(e, inline=False))
    else:
        st.error(
            "A settings or state file of the panel is damaged. The details, and how to reset it, are in "
            "the panel's log, and on this page when it is opened on the machine itself (127.0.0.1)."
        )
    st.stop()


def once_notice(text: str) -> None:
    """A warning shown once per browser session (the history was reset, say)."""
    if text and not st.session_state.get("zoe-notice-shown"):
        st.session_state["zoe-notice-shown"] = True
        st.warning(text)
