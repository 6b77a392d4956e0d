"""Pages run only inside app.py's navigation (and so behind its sign-in gate).

Streamlit serves a pages/ folder by itself until a session's main script has called
st.navigation, so the very first request of a fresh server to a deep link such as /engine would
run pages/engine.py without app.py. Every page therefore starts with ``guard()``: outside app.py's
run it switches to app.py, which applies the gate and the navigation.
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


def guard() -> None:
    if not running_in_app():
        caller = sys._getframe(1).f_globals.get("__file__", "")
        st.session_state[DEEP_LINK] = Path(caller).name  # app.py sends the browser on to it
        st.switch_page("app.py")


def follow_deep_link(pages: Sequence[Any]) -> None:
    """In app.py, after st.navigation: go on to the page a deep link asked for before the gate."""
    target = st.session_state.pop(DEEP_LINK, None)
    if not target:
        return
    for page in pages:
        if getattr(page, "url_path", None) == Path(target).stem:
            st.switch_page(page)
