"""Readiness probes and port checks.

The flavour says how: llama-server answers ``/health`` 503 while loading and 200 when ready (its
socket is bound before the model loads); llama-cpp-python's server has no /health and binds only
after loading, and ``/v1/models`` there takes the model lock, so once it is up only the TCP port is
checked, which cannot cut a running stream short (REFERENCE.md §2).
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass

import httpx

from zoe_panel.engine.base import EngineSpec
from zoe_panel.errors import PortInUseError


@dataclass(frozen=True)
class Probe:
    ready: bool
    reachable: bool  # something answered on the port
    detail: str = ""


def _client_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def auth_headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


_client: httpx.Client | None = None
_client_lock = threading.Lock()


def _http() -> httpx.Client:
    """One client for all probes: building one costs ~30 ms (SSL context), a probe ~1 ms. It keeps
    no connection open: llama-server's HTTP library polls an idle kept-alive socket about every 10 ms
    until its keep-alive timeout, so probes a few seconds apart kept an idle engine at ~0.5 % of a
    core; a fresh loopback connection per probe costs a fraction of a millisecond."""
    global _client
    with _client_lock:
        if _client is None:
            _client = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0))
        return _client


def probe(spec: EngineSpec, *, loaded: bool, timeout_s: float = 1.0) -> Probe:
    from zoe_panel.engine import flavors

    flavor = flavors.get(spec.flavor)
    host = _client_host(spec.host)
    base = f"http://{host}:{spec.port}"
    if flavor.tcp_probe_once_loaded and loaded:
        return _tcp_probe(host, spec.port, timeout_s)
    path = flavor.readiness_path
    try:
        r = _http().get(base + path, timeout=timeout_s, headers=auth_headers(spec.api_key))
    except httpx.TimeoutException:
        return Probe(False, True, f"{path} timed out")
    except httpx.HTTPError as e:
        return Probe(False, False, f"{path}: {type(e).__name__}")
    if r.status_code == 200:
        return Probe(True, True, "ok")
    if r.status_code == 503:
        return Probe(False, True, "loading model")
    return Probe(False, True, f"{path} answered HTTP {r.status_code}")


def _tcp_probe(host: str, port: int, timeout_s: float) -> Probe:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return Probe(True, True, "port open")
    except OSError as e:
        return Probe(False, False, f"port {port}: {e.strerror or e}")


def check_port_free(host: str, port: int) -> None:
    """Raise PortInUseError naming the holder when (host, port) cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            holder = _port_holder(port)
            raise PortInUseError(
                f"port {port} on {host} is already in use{holder}; pick another port "
                "(Engine page → port, or --port) or stop what holds it"
            ) from None


def _port_holder(port: int) -> str:
    try:
        import psutil

        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                name = psutil.Process(conn.pid).name()
                return f" by {name} (pid {conn.pid})"
    except Exception:  # noqa: BLE001 - naming the holder is a courtesy; permissions vary
        return ""
    return ""
