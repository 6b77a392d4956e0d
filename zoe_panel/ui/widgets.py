"""Small Streamlit helpers shared by the pages (the only zoe_panel module besides ui/* that imports st)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

from zoe_panel.engine.base import EngineState, EngineStatus
from zoe_panel.errors import ZoePanelError

T = TypeVar("T")

STATE_ICON = {
    EngineState.STOPPED: "⚪",
    EngineState.STARTING: "🟡",
    EngineState.READY: "🟢",
    EngineState.FAILED: "🔴",
    EngineState.UNHEALTHY: "🟠",
}


def state_line(status: EngineStatus) -> str:
    text = f"{STATE_ICON[status.state]} **{status.state.value}**"
    if status.spec is not None and status.state != EngineState.STOPPED:
        text += f" · {status.spec.model_name} · {status.backend}/{status.spec.flavor} · {status.base_url}"
    return text


def attempt(fn: Callable[[], T], *, success: str | None = None) -> T | None:
    """Run an action; a ZoePanelError becomes a red message on the page, never a traceback."""
    try:
        result = fn()
    except ZoePanelError as e:
        st.error(str(e))
        return None
    if success:
        st.success(success)
    return result


def fmt_bytes(n: int | float | None) -> str:
    if n is None:
        return "–"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    return f"{value:.2f} TiB"


def session_get(key: str, factory: Callable[[], Any]) -> Any:
    if key not in st.session_state:
        st.session_state[key] = factory()
    return st.session_state[key]
