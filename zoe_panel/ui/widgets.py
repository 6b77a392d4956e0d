"""Small Streamlit helpers shared by the pages (the only zoe_panel module besides ui/* that imports st)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

from zoe_panel.engine.base import EngineState, EngineStatus
from zoe_panel.errors import ZoePanelError

T = TypeVar("T")

# Markdown badges with Material icons: they render without an emoji font (LAN kiosks, headless).
STATE_BADGE = {
    EngineState.STOPPED: ":gray-badge[:material/stop_circle: STOPPED]",
    EngineState.STARTING: ":orange-badge[:material/hourglass_top: STARTING]",
    EngineState.READY: ":green-badge[:material/check_circle: READY]",
    EngineState.FAILED: ":red-badge[:material/error: FAILED]",
    EngineState.UNHEALTHY: ":orange-badge[:material/warning: UNHEALTHY]",
}


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:$&])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029]")


def md(text: object, *, inline: bool = True) -> str:
    """Text from users, files or the network, made inert for Streamlit's markdown: every markdown,
    directive (:red[...], :material/x:) and LaTeX character escaped, control characters dropped,
    and (inline) line breaks turned into spaces. A model named ``![x](http://...)`` is shown as
    those characters, never as an image."""
    out = _CONTROL.sub("", str(text))
    if inline:
        out = out.replace("\r", " ").replace("\n", " ")
    return _MD_SPECIAL.sub(r"\\\1", out)


def state_line(status: EngineStatus) -> str:
    text = STATE_BADGE[status.state]
    if status.spec is not None and status.state != EngineState.STOPPED:
        where = f"{status.backend}/{status.spec.flavor}"
        text += f" · {md(status.spec.model_name)} · {md(where)} · {md(status.base_url)}"
    return text


def attempt(fn: Callable[[], T], *, success: str | None = None) -> T | None:
    """Run an action; a ZoePanelError becomes a red message on the page, never a traceback."""
    try:
        result = fn()
    except ZoePanelError as e:
        st.error(md(str(e), inline=False))
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


def audit_rows(rt: Any, limit: int = 1000) -> list[dict[str, Any]]:
    import datetime as dt

    return [
        {
            "time": dt.datetime.fromtimestamp(r["t"]).strftime("%Y-%m-%d %H:%M:%S"),
            "client": r["client"],
            "action": r["action"],
            "target": r["target"],
            "outcome": r["outcome"],
            "detail": r["detail"],
        }
        for r in rt.history.audit_log(limit)
    ]
