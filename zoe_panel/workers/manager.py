"""Local RPC workers (llama.cpp's ``rpc-server``), supervised as the engine is: a record file per
worker (pid, start time, binary, address), a log, and state read from the world on every call: a
worker is running when its process lives with the recorded start time and answers the RPC hello.

RPC has no authentication: anyone who reaches the port can run graphs and read the buffers. Binding
anywhere but loopback therefore needs ``allow_remote`` and carries a warning wherever it is shown."""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from zoe_panel.errors import BinaryNotFound, ConfigError, EngineError
from zoe_panel.jsonfile import read_cache, write_json_atomic
from zoe_panel.settings import Settings
from zoe_panel.workers.probe import DEFAULT_PORT, Probe, probe

REMOTE_WARNING = (
    "RPC has no authentication and no encryption: anyone who can reach {endpoint} can use this machine's "
    "memory and compute and read what it holds. Bind outside loopback on a trusted, private network only."
)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def find_rpc_server(settings: Settings) -> str:
    """``ZOE_RPC_SERVER``, then the rpc-server built beside the chosen llama-server (same source,
    same variant), then PATH."""
    env = os.environ.get("ZOE_RPC_SERVER", "")
    if env:
        if Path(env).is_file() and os.access(env, os.X_OK):
            return env
        raise BinaryNotFound(f"ZOE_RPC_SERVER={env} is not an executable file")
    from zoe_panel.engine.binary import find_llama_server

    try:
        beside = Path(find_llama_server(settings)).resolve().parent / "rpc-server"
        if beside.is_file() and os.access(beside, os.X_OK):
            return str(beside)
    except BinaryNotFound:
        pass
    on_path = shutil.which("rpc-server")
    if on_path:
        return on_path
    raise BinaryNotFound(
        "rpc-server was not found: `make llama-server` builds it beside llama-server (GGML_RPC=ON), "
        "or set ZOE_RPC_SERVER to one built from the same llama.cpp"
    )


@dataclass
class WorkerStatus:
    endpoint: str
    host: str
    port: int
    state: str  # running | busy | starting | exited | stopped
    pid: int | None = None
    started_at: float | None = None
    binary: str = ""
    cache: bool = False
    threads: int = 0
    exit_note: str = ""
    warning: str = ""
    probe: Probe | None = None
    log: str = ""

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["probe"] = self.probe.to_json() if self.probe else None
        return d


class WorkerManager:
    """Start, list and stop rpc-server processes on this machine."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.state_dir / "rpc-workers"

    def _record_path(self, port: int) -> Path:
        return self.dir / f"{port}.json"

    def log_path(self, port: int) -> Path:
        return self.dir / f"{port}.log"

    def start(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        cache: bool = False,
        threads: int = 0,
        allow_remote: bool = False,
        wait_s: float = 10.0,
    ) -> WorkerStatus:
        if not 1 <= port <= 65535:
            raise ConfigError(f"port {port} is outside 1-65535")
        if not is_loopback(host) and not allow_remote:
            raise ConfigError(
                f"binding rpc-server to {host} exposes it to the network, and RPC has no authentication: "
                "pass --allow-remote (tick 'Allow other machines' on the Workers page) on a trusted network only"
            )
        if not 0 <= threads <= 1024:
            raise ConfigError(f"threads {threads} is out of range (0..1024, 0 = all cores)")
        current = self._status_of(port, probe_it=False)
        if current is not None and current.state in ("running", "busy", "starting"):
            raise EngineError(f"a worker already runs on port {port} (pid {current.pid}); stop it first")
        if _port_taken(host, port):
            raise EngineError(f"port {port} on {host} is in use by another program; choose another port")
        binary = find_rpc_server(self.settings)
        argv = [binary, "--host", host, "--port", str(port), "--threads", str(threads or os.cpu_count() or 1)]
        if cache:
            argv.append("--cache")
        env = dict(os.environ)
        # the tensor cache (-c) goes under the panel's cache, not ~/.cache/llama.cpp
        env["LLAMA_CACHE"] = str(self.settings.cache_dir / "rpc-cache")
        self.dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path(port)
        with log.open("ab") as out:
            out.write(f"\nzoe-panel: {' '.join(argv)}\n".encode())
            out.flush()
            # restore_signals=False: the worker inherits Python's ignored SIGPIPE. rpc-server writes
            # with plain send(): a client gone before its reply (an engine killed mid-request, a probe
            # that gave up on a busy worker) would otherwise kill the worker with SIGPIPE, silently.
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
                restore_signals=False,
            )
        # reap it if it dies while this process lives (no zombie in the panel)
        threading.Thread(target=proc.wait, daemon=True, name=f"rpc-worker-{port}").start()
        created = _create_time(proc.pid)
        write_json_atomic(
            self._record_path(port),
            {
                "host": host,
                "port": port,
                "pid": proc.pid,
                "created": created,
                "started_at": time.time(),
                "binary": binary,
                "cache": cache,
                "threads": threads,
            },
        )
        deadline = time.monotonic() + wait_s
        while True:
            st = self._status_of(port, probe_it=True)
            assert st is not None
            if st.state == "running":
                return st
            if st.state == "exited":
                raise EngineError(f"rpc-server on port {port} exited at start: {st.log[-600:] or st.exit_note}")
            if time.monotonic() > deadline:
                return st
            time.sleep(0.1)

    def status(self, *, probe_it: bool = True) -> list[WorkerStatus]:
        if not self.dir.is_dir():
            return []
        out = []
        for rec in sorted(self.dir.glob("*.json"), key=lambda p: int(p.stem) if p.stem.isdigit() else 0):
            if rec.stem.isdigit():
                st = self._status_of(int(rec.stem), probe_it=probe_it)
                if st is not None:
                    out.append(st)
        return out

    def _status_of(self, port: int, *, probe_it: bool) -> WorkerStatus | None:
        rec = read_cache(self._record_path(port), dict)  # a damaged record is ignored, not fatal
        if not rec:
            return None
        host = str(rec.get("host", "127.0.0.1"))
        endpoint = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        st = WorkerStatus(
            endpoint=endpoint,
            host=host,
            port=port,
            state="stopped" if rec.get("stopped") else "exited",
            pid=rec.get("pid"),
            started_at=rec.get("started_at"),
            binary=str(rec.get("binary", "")),
            cache=bool(rec.get("cache")),
            threads=int(rec.get("threads", 0)),
            warning="" if is_loopback(host) else REMOTE_WARNING.format(endpoint=endpoint),
        )
        alive = st.pid is not None and _alive(int(st.pid), rec.get("created"))
        if not alive:
            if st.state == "exited":
                st.exit_note = "the worker is not running (it exited or was killed)"
                st.log = self.tail(port)
            return st
        # an rpc-server serves one client: a connected engine leaves a probe waiting, so a worker
        # with a client is "busy", read from its sockets rather than asked
        st.state = "running"
        if _has_client(int(st.pid or 0), port):
            st.state = "busy"
        elif probe_it:
            where = "127.0.0.1" if host in ("0.0.0.0", "::", "[::]") else host
            st.probe = probe(f"[{where}]:{port}" if ":" in where else f"{where}:{port}", timeout_s=1.0)
            if st.probe.state == "busy":
                st.state = "busy"
            elif st.probe.state == "unreachable":
                st.state = "starting"
        return st

    def stop(self, port: int | None = None, *, all_workers: bool = False, timeout_s: float = 5.0) -> list[WorkerStatus]:
        targets = [s for s in self.status(probe_it=False) if all_workers or s.port == port]
        if port is not None and not targets:
            raise EngineError(f"no worker was started on port {port} from this panel")
        if port is None and not all_workers:
            raise ConfigError("name the worker's port, or stop them all (--all)")
        out = []
        for st in targets:
            rec = read_cache(self._record_path(st.port), dict)
            if st.state in ("running", "busy", "starting") and st.pid:
                _terminate(int(st.pid), timeout_s)
            rec["stopped"] = True
            rec["stopped_at"] = time.time()
            write_json_atomic(self._record_path(st.port), rec)
            done = self._status_of(st.port, probe_it=False)
            if done is not None:
                out.append(done)
        return out

    def forget(self, port: int) -> None:
        """Drop a stopped or exited worker's record and log from the list."""
        st = self._status_of(port, probe_it=False)
        if st is not None and st.state in ("running", "busy", "starting"):
            raise EngineError(f"the worker on port {port} is running; stop it first")
        self._record_path(port).unlink(missing_ok=True)
        self.log_path(port).unlink(missing_ok=True)

    def tail(self, port: int, lines: int = 40) -> str:
        path = self.log_path(port)
        try:
            with path.open("rb") as f:
                f.seek(max(0, path.stat().st_size - 16384))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _create_time(pid: int) -> float | None:
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def _alive(pid: int, created: Any) -> bool:
    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        # a reused pid has another start time: not our worker
        return created is None or abs(p.create_time() - float(created)) < 1.0
    except psutil.Error:
        return False


def _has_client(pid: int, port: int) -> bool:
    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return False
    return any(c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port for c in conns)


def _terminate(pid: int, timeout_s: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid, None):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _port_taken(host: str, port: int) -> bool:
    fam = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        try:
            s.bind((host.strip("[]"), port))
        except OSError:
            return True
    return False
