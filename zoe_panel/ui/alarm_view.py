"""The after-load memory alarm in the UI: a toast on whatever page is open, a line in the sidebar,
and on the Engine and Monitor pages a banner with the offer to restart with a smaller cache."""

from __future__ import annotations

import streamlit as st

from zoe_panel.runtime import Runtime
from zoe_panel.ui.widgets import attempt, md

TOASTED = "zoe-alarm-toasted"


def alarm_toast(rt: Runtime) -> None:
    """In the sidebar's live fragment: a toast once per alarm and session, and a standing line."""
    alarm = rt.memory_alarm()
    if alarm is None:
        return
    if st.session_state.get(TOASTED) != alarm.since:
        st.session_state[TOASTED] = alarm.since
        st.toast(md(alarm.message()), icon=":material/warning:", duration="long")
    st.markdown(f":red-badge[:material/warning: memory alarm] {alarm.available_bytes / 2**20:.0f} MiB left")


def alarm_banner(rt: Runtime, key: str) -> None:
    alarm = rt.memory_alarm()
    if alarm is None:
        return
    with st.container(key=f"{key}-memory-alarm"):
        st.error(md(alarm.message(), inline=False), icon=":material/warning:")
        size = alarm.suggested_cache_ram_mib
        if size is not None and st.button(f"Restart with a {size} MiB prompt cache", key=f"{key}-alarm-restart"):
            from zoe_panel.ui.auth_view import client_address

            if attempt(lambda: rt.restart_smaller_cache(client=client_address())):
                st.toast(f"Restarting with --cache-ram {size}…")
