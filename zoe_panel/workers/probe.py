"""Ask an rpc-server what it is and what it has: its protocol version and each device's free and
total memory. Pure sockets, no llama.cpp needed, so the panel can check a worker before Start and name
the node that is down, busy or of another version.

The wire format (ggml-rpc.cpp, protocol 7): a request is ``cmd (1 byte) | size (u64) | payload``, a
reply is ``size (u64) | payload``, little-endian. HELLO (14) carries 24 bytes of transport
capabilities (all zero: plain TCP) and answers ``major, minor, patch, pad`` + 24 bytes. An rpc-server
serves one client at a time: while an engine is connected, a probe waits in the listen backlog, which
is how a busy worker shows (connected, then no answer)."""

from __future__ import annotations

import socket
import struct
from dataclasses import asdict, dataclass, field
from typing import Any

from zoe_panel.errors import ConfigError

CMD_GET_DEVICE_MEMORY = 11
CMD_HELLO = 14
CMD_DEVICE_COUNT = 15
CAPS_SIZE = 24
# The protocol this panel's llama.cpp speaks (ggml/include/ggml-rpc.h of the vendored source); a
# worker answering another major version, or a newer minor, is refused by llama-server.
PROTO_MAJOR = 7
PROTO_MINOR = 0
DEFAULT_PORT = 50052


class EndpointError(ConfigError, ValueError):
    """A worker address that is not host:port."""


def parse_endpoint(text: str) -> tuple[str, int]:
    """``host:port`` (IPv6 as ``[::1]:50052``) to (host, port); a clear error otherwise."""
    t = text.strip()
    if t.startswith("["):
        host, _, rest = t[1:].partition("]")
        port_s = rest.removeprefix(":")
    else:
        host, sep, port_s = t.rpartition(":")
        if not sep:
            raise EndpointError(f"worker {text!r}: write it as host:port (for example 192.168.1.20:{DEFAULT_PORT})")
    if not host or any(c.isspace() or c in ",;/" for c in host):
        raise EndpointError(f"worker {text!r}: the host part is empty or has spaces, commas or slashes")
    try:
        port = int(port_s)
    except ValueError:
        raise EndpointError(f"worker {text!r}: the port {port_s!r} is not a number") from None
    if not 1 <= port <= 65535:
        raise EndpointError(f"worker {text!r}: port {port} is outside 1-65535")
    return host, port


def parse_endpoints(text: str) -> tuple[str, ...]:
    """A comma-separated list as llama-server's --rpc takes it; duplicates refused."""
    out: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        host, port = parse_endpoint(part)
        ep = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if ep in out:
            raise EndpointError(f"worker {ep} is listed twice")
        out.append(ep)
    return tuple(out)


def parse_worker_free(items: list[str] | tuple[str, ...]) -> dict[str, int]:
    """``HOST:PORT=GiB`` entries (a worker's free memory entered by hand) to bytes by endpoint."""
    out: dict[str, int] = {}
    for item in (i.strip() for i in items):
        if not item:
            continue
        ep, sep, gib = item.partition("=")
        how = f"free memory {item!r}: write HOST:PORT=GiB, e.g. 192.168.1.20:{DEFAULT_PORT}=12.5"
        try:
            (key,) = parse_endpoints(ep)
            value = float(gib)
        except (EndpointError, ValueError):
            raise EndpointError(how) from None
        if not sep or not 0 <= value < 1 << 20:
            raise EndpointError(how)
        out[key] = int(value * 2**30)
    return out


@dataclass(frozen=True)
class Device:
    free_bytes: int
    total_bytes: int


@dataclass
class Probe:
    """What one worker answered. ``state``: ready | unreachable | busy | mismatch | not_rpc."""

    endpoint: str
    state: str
    version: str = ""
    devices: list[Device] = field(default_factory=list)
    error: str = ""
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.state == "ready"

    @property
    def free_bytes(self) -> int:
        return sum(d.free_bytes for d in self.devices)

    @property
    def total_bytes(self) -> int:
        return sum(d.total_bytes for d in self.devices)

    def message(self) -> str:
        """One line an operator can act on."""
        if self.state == "ready":
            return f"worker {self.endpoint}: rpc-server {self.version}, {self.free_bytes / 2**30:.1f} GiB free"
        if self.state == "unreachable":
            return (
                f"worker {self.endpoint} is unreachable ({self.error}): start rpc-server there "
                f"(python -m zoe_panel rpc-worker start --host <its address> --allow-remote) or remove it from the list"
            )
        if self.state == "busy":
            return (
                f"worker {self.endpoint} accepted the connection but did not answer: an rpc-server serves one "
                "engine at a time, so another engine is probably using it (or it hung); stop that engine "
                "or restart the worker"
            )
        if self.state == "mismatch":
            return (
                f"worker {self.endpoint} speaks RPC protocol {self.version}, this engine speaks "
                f"{PROTO_MAJOR}.{PROTO_MINOR}.x: rebuild rpc-server there from the same llama.cpp as the engine "
                "(make llama-server)"
            )
        return f"worker {self.endpoint} is not an rpc-server this engine can use ({self.error})"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["free_bytes"] = self.free_bytes
        d["total_bytes"] = self.total_bytes
        d["message"] = self.message()
        return d


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("the worker closed the connection")
        buf += chunk
    return bytes(buf)


def _call(sock: socket.socket, cmd: int, payload: bytes, want: int) -> bytes:
    sock.sendall(struct.pack("<BQ", cmd, len(payload)) + payload)
    (size,) = struct.unpack("<Q", _recv_exact(sock, 8))
    if size != want:
        raise ValueError(f"command {cmd} answered {size} bytes, expected {want}")
    return _recv_exact(sock, size)


def probe(endpoint: str, *, timeout_s: float = 3.0) -> Probe:
    """Connect, say hello, count devices and read their memory. Never raises for a bad worker."""
    import time

    t0 = time.monotonic()
    try:
        host, port = parse_endpoint(endpoint)
    except EndpointError as e:
        return Probe(endpoint, "not_rpc", error=str(e))
    try:
        sock = socket.create_connection((host, port), timeout=timeout_s)
    except OSError as e:
        why = e.strerror or type(e).__name__
        if isinstance(e, TimeoutError | socket.timeout):
            why = f"no answer to connect within {timeout_s:.0f} s"
        return Probe(endpoint, "unreachable", error=why, elapsed_s=time.monotonic() - t0)
    try:
        with sock:
            sock.settimeout(timeout_s)
            try:
                hello = _call(sock, CMD_HELLO, bytes(CAPS_SIZE), 4 + CAPS_SIZE)
            except TimeoutError:
                return Probe(endpoint, "busy", error="no answer to hello", elapsed_s=time.monotonic() - t0)
            except (ConnectionError, ValueError) as e:
                # A server of another protocol generation closes on a hello of the wrong size.
                return Probe(
                    endpoint,
                    "mismatch",
                    version="older or newer (it refused this hello)",
                    error=str(e),
                    elapsed_s=time.monotonic() - t0,
                )
            major, minor, patch = hello[0], hello[1], hello[2]
            version = f"{major}.{minor}.{patch}"
            if major != PROTO_MAJOR or minor > PROTO_MINOR:
                return Probe(endpoint, "mismatch", version=version, elapsed_s=time.monotonic() - t0)
            (count,) = struct.unpack("<I", _call(sock, CMD_DEVICE_COUNT, b"", 4))
            devices = []
            for dev in range(min(count, 16)):
                free, total = struct.unpack("<QQ", _call(sock, CMD_GET_DEVICE_MEMORY, struct.pack("<I", dev), 16))
                devices.append(Device(free, total))
            return Probe(endpoint, "ready", version=version, devices=devices, elapsed_s=time.monotonic() - t0)
    except (OSError, ValueError, struct.error) as e:
        return Probe(endpoint, "not_rpc", error=str(e) or type(e).__name__, elapsed_s=time.monotonic() - t0)


def probe_all(endpoints: tuple[str, ...] | list[str], *, timeout_s: float = 3.0) -> list[Probe]:
    """Probe several workers at once (each waits at most ``timeout_s``)."""
    from concurrent.futures import ThreadPoolExecutor

    if not endpoints:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(endpoints))) as pool:
        return list(pool.map(lambda ep: probe(ep, timeout_s=timeout_s), endpoints))
