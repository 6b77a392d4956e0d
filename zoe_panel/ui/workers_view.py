"""The Workers page: rpc-server workers on this machine (start, state, log, stop) and a check of
workers on other boards, for a model split over several machines."""

from __future__ import annotations

from typing import Any

import streamlit as st

from zoe_panel.runtime import Runtime
from zoe_panel.ui.widgets import attempt, fmt_bytes, md
from zoe_panel.workers.manager import REMOTE_WARNING, WorkerStatus, is_loopback

STATE_BADGE = {
    "running": ":green-badge[running]",
    "busy": ":blue-badge[serving an engine]",
    "starting": ":orange-badge[starting]",
    "exited": ":red-badge[exited]",
    "stopped": ":gray-badge[stopped]",
}


def start_form(rt: Runtime) -> None:
    from zoe_panel.ui.auth_view import client_address

    with st.form("workers-start", border=True):
        st.markdown("**Start a worker on this machine**")
        c1, c2, c3 = st.columns(3)
        host = c1.text_input("Bind address", "127.0.0.1", key="workers-host")
        port = c2.number_input("Port", 1, 65535, 50052, key="workers-port")
        threads = c3.number_input("Threads (0 = all cores)", 0, 1024, 0, key="workers-threads")
        cache = st.checkbox("Local tensor cache (faster reloads of the same model)", key="workers-cache")
        remote = st.checkbox("Allow other machines to connect (no authentication)", key="workers-remote")
        if not is_loopback(host):
            st.warning(md(REMOTE_WARNING.format(endpoint=f"{host}:{port}")))
        go = st.form_submit_button("Start worker", type="primary", key="workers-start-go")
    if go:

        def start() -> WorkerStatus:
            st_ = rt.workers.start(
                host=host.strip(), port=int(port), cache=cache, threads=int(threads), allow_remote=remote
            )
            rt.history.audit("rpc-worker start", "ok", client=client_address(), target=st_.endpoint)
            return st_

        got = attempt(start)
        if got is not None:
            st.toast(f"Worker {got.endpoint} {got.state}.")


def stop_worker(rt: Runtime, port: int) -> None:
    from zoe_panel.ui.auth_view import client_address

    for w in rt.workers.stop(port):
        rt.history.audit("rpc-worker stop", "ok", client=client_address(), target=w.endpoint)


def _forget(rt: Runtime, port: int) -> None:
    rt.workers.forget(port)


def _act(fn: Any, rt: Runtime, port: int) -> None:
    """A button's callback: the action, its error shown as a toast (callbacks run before the page)."""
    from zoe_panel.errors import ZoePanelError

    try:
        fn(rt, port)
    except ZoePanelError as e:
        st.toast(str(e), icon=":material/error:")


def worker_rows(workers: list[WorkerStatus]) -> list[dict[str, Any]]:
    rows = []
    for w in workers:
        free = "-"
        if w.probe is not None and w.probe.ok:
            free = f"{fmt_bytes(w.probe.free_bytes)} of {fmt_bytes(w.probe.total_bytes)}"
        rows.append(
            {
                "worker": w.endpoint,
                "state": w.state,
                "pid": str(w.pid or "-"),
                "protocol": w.probe.version if w.probe is not None and w.probe.version else "-",
                "free memory": free,
                "cache": "yes" if w.cache else "no",
            }
        )
    return rows


def local_workers(rt: Runtime) -> None:
    workers = rt.workers.status()
    with st.container(key="workers-list"):
        if not workers:
            st.caption("No worker was started on this machine.")
            return
        st.table(worker_rows(workers))
        for w in workers:
            if w.warning and w.state in ("running", "busy"):
                st.warning(md(w.warning), icon=":material/lan:")
        for w in workers:
            with st.expander(f"{w.endpoint} · {w.state}", expanded=w.state == "exited"):
                st.markdown(STATE_BADGE.get(w.state, w.state) + (f" · {md(w.exit_note)}" if w.exit_note else ""))
                if w.state in ("running", "busy", "starting"):
                    st.button("Stop", key=f"workers-stop-{w.port}", on_click=_act, args=(stop_worker, rt, w.port))
                else:
                    st.button(
                        "Remove from the list",
                        key=f"workers-forget-{w.port}",
                        on_click=_act,
                        args=(_forget, rt, w.port),
                    )
                st.code(rt.workers.tail(w.port) or "(no log)", language=None)


def probe_form() -> None:
    from zoe_panel.workers.probe import parse_endpoints, probe_all

    with st.form("workers-probe"):
        st.markdown("**Check workers on other boards**")
        text = st.text_input("Workers (host:port, …)", key="workers-probe-list", placeholder="192.168.1.20:50052")
        go = st.form_submit_button("Check", key="workers-probe-go")
    if go:
        eps = attempt(lambda: parse_endpoints(text))
        if eps:
            with st.container(key="workers-probe-result"):
                for p in probe_all(eps):
                    (st.success if p.ok else st.error)(md(p.message()))
