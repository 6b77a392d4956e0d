"""Process backend: native llama-server or llama-cpp-python's server under a detached supervisor.

Files under ``<state>/engine/``: ``engine.json`` (what the panel started: run id, spec, argv),
``supervisor.json`` (what the supervisor saw: pids, phase, exit code), ``engine.log``.
Status is derived from these plus /proc and a health probe on every read.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from zoe_panel.engine import argv as argvmod
from zoe_panel.engine.base import EngineSpec, EngineState, EngineStatus
from zoe_panel.engine.binary import capabilities, find_llama_server, python_server_available
from zoe_panel.engine.health import Probe, check_port_free, probe
from zoe_panel.engine.logfile import read_stamped, tail_lines
from zoe_panel.engine.supervisor import write_json_atomic
from zoe_panel.errors import BinaryNotFound, EngineError, EngineNotRunning
from zoe_panel.settings import Settings


def describe_exit(code: int | None) -> str:
    if code is None:
        return "unknown exit code"
    if code > 128:
        try:
            name = signal.Signals(code - 128).name
        except ValueError:
            name = f"signal {code - 128}"
        hint = " (out of memory? the kernel's OOM killer sends SIGKILL)" if code == 137 else ""
        return f"exit code {code}, killed by {name}{hint}"
    return f"exit code {code}"


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    alive: bool


def _alive(pid: int | None, create_time: float | None = None) -> bool:
    if not pid:
        return False
    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        # A recycled pid would have a later start time than the one we recorded.
        return create_time is None or abs(p.create_time() - create_time) < 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def derive_status(
    meta: dict[str, Any] | None,
    sup: dict[str, Any] | None,
    *,
    supervisor_alive: bool,
    child_alive: bool,
    probe_result: Probe | None,
    log_tail: tuple[str, ...] = (),
) -> EngineStatus:
    """Pure: the engine's state from what the files and /proc say. Unit-tested case by case."""
    if meta is None:
        return EngineStatus(EngineState.STOPPED)
    spec = EngineSpec.from_json(meta["spec"])
    common: dict[str, Any] = dict(
        backend="process",
        spec=spec,
        run_id=meta.get("run_id"),
        started_at=meta.get("started_at"),
        log_tail=log_tail,
    )
    sup = sup if sup and sup.get("run_id") == meta.get("run_id") else None
    restarts = int(sup.get("restarts", 0)) if sup else 0
    code = sup.get("exit_code") if sup else None
    pid = sup.get("child_pid") if sup else None
    if meta.get("stopped_at") or (sup and sup.get("phase") == "stopped"):
        return EngineStatus(EngineState.STOPPED, exit_code=code, restarts=restarts, **common)
    if sup is None:
        if supervisor_alive:
            return EngineStatus(EngineState.STARTING, reason="supervisor starting", **common)
        return EngineStatus(
            EngineState.FAILED, reason=meta.get("spawn_error") or "the engine supervisor did not start", **common
        )
    phase = sup.get("phase")
    if phase == "exited" or (not supervisor_alive and not child_alive):
        reason = sup.get("reason") or ""
        if not supervisor_alive and phase in ("running", "backoff"):
            reason = reason or "the engine's supervisor died"
        return EngineStatus(
            EngineState.FAILED,
            exit_code=code,
            restarts=restarts,
            reason=f"{describe_exit(code)}. {reason}".strip(),
            **common,
        )
    if phase == "backoff":
        return EngineStatus(
            EngineState.FAILED,
            pid=pid,
            exit_code=code,
            restarts=restarts,
            reason=f"{describe_exit(code)}; restarting ({restarts} so far)",
            **common,
        )
    if not child_alive:
        return EngineStatus(EngineState.STARTING, pid=pid, restarts=restarts, reason="engine starting", **common)
    if probe_result is not None and probe_result.ready:
        return EngineStatus(EngineState.READY, pid=pid, restarts=restarts, ready_at=sup.get("ready_at"), **common)
    if sup.get("loaded"):
        detail = probe_result.detail if probe_result else "no probe"
        return EngineStatus(
            EngineState.UNHEALTHY, pid=pid, restarts=restarts, reason=f"health check failed: {detail}", **common
        )
    detail = probe_result.detail if probe_result else ""
    return EngineStatus(EngineState.STARTING, pid=pid, restarts=restarts, reason=detail, **common)


class ProcessEngine:
    """Runs the engine as a local process tree (supervisor + server)."""

    name = "process"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.state_dir / "engine"
        self.meta_file = self.dir / "engine.json"
        self.sup_file = self.dir / "supervisor.json"
        self.log_file = self.dir / "engine.log"

    # -- availability -------------------------------------------------------------------
    def is_available(self, flavor: str | None = None) -> tuple[bool, str]:
        flavor = flavor or self.settings.flavor
        if flavor == "llama-cpp-python":
            return python_server_available()
        try:
            return True, find_llama_server(self.settings)
        except BinaryNotFound as e:
            return False, str(e)

    def build_argv(self, spec: EngineSpec) -> list[str]:
        if spec.flavor == "llama-cpp-python":
            ok, detail = python_server_available()
            if not ok:
                raise BinaryNotFound(detail)
            return argvmod.llama_cpp_python_argv(sys.executable, spec)
        binary = find_llama_server(self.settings)
        caps = capabilities(binary, self.settings.state_dir / "binaries.json")
        return argvmod.llama_server_argv(binary, spec, caps)

    # -- lifecycle ----------------------------------------------------------------------
    def start(self, spec: EngineSpec, *, run_id: str) -> EngineStatus:
        if not Path(spec.model).is_file():
            raise EngineError(f"model file {spec.model} does not exist")
        argv = self.build_argv(spec)
        check_port_free(spec.host, spec.port)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._rotate_log()
        for stale in (self.sup_file,):
            stale.unlink(missing_ok=True)
        meta = {
            "run_id": run_id,
            "spec": spec.to_json(),
            "argv": [a if a != spec.api_key else "***" for a in argv],
            "started_at": time.time(),
            "backend": self.name,
        }
        write_json_atomic(self.meta_file, meta)
        os.chmod(self.meta_file, 0o600)  # the spec holds the engine's API key
        env = dict(os.environ)
        env.update(argvmod.engine_env(spec))
        # The supervisor runs from the state folder; make this very package importable there.
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
        cmd = [
            sys.executable,
            "-m",
            "zoe_panel.engine.supervisor",
            "--state",
            str(self.dir),
            "--run-id",
            run_id,
            "--restart",
            self.settings.restart_policy,
            "--restart-max",
            str(self.settings.restart_max),
            "--stop-timeout",
            str(self.settings.stop_timeout_s),
            "--",
            *argv,
        ]
        err = (self.dir / "supervisor.err").open("wb")
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                env=env,
                start_new_session=True,
                close_fds=True,
                cwd=str(self.dir),
            )
        except OSError as e:
            meta["spawn_error"] = f"cannot start the supervisor: {e}"
            write_json_atomic(self.meta_file, meta)
            raise EngineError(meta["spawn_error"]) from None
        finally:
            err.close()
        meta["supervisor_pid"] = proc.pid
        meta["supervisor_create_time"] = psutil.Process(proc.pid).create_time()
        write_json_atomic(self.meta_file, meta)
        # Reap it if it dies while we still run, so it never lingers as a zombie of ours.
        import threading

        threading.Thread(target=proc.wait, daemon=True).start()
        return self.status()

    def stop(self, timeout_s: float) -> EngineStatus:
        meta = self._read(self.meta_file)
        if meta is None:
            raise EngineNotRunning("no engine is running (nothing to stop)")
        sup_pid = meta.get("supervisor_pid")
        alive = _alive(sup_pid, meta.get("supervisor_create_time"))
        sup = self._read(self.sup_file) or {}
        child_alive = _alive(sup.get("child_pid"))
        if not alive and not child_alive and meta.get("stopped_at"):
            raise EngineNotRunning("the engine is already stopped")
        if alive and sup_pid:
            try:
                os.kill(int(sup_pid), signal.SIGTERM)
            except ProcessLookupError:
                pass
            self._wait_gone(sup_pid, timeout_s + 3.0)
        if _alive(sup_pid, meta.get("supervisor_create_time")) or _alive(sup.get("child_pid")):
            for pid in (sup_pid, sup.get("child_pid")):
                if pid:
                    try:
                        os.killpg(os.getpgid(pid), signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
            self._wait_gone(sup.get("child_pid"), 5.0)
        meta["stopped_at"] = time.time()
        write_json_atomic(self.meta_file, meta)
        return self.status()

    @staticmethod
    def _wait_gone(pid: int | None, timeout_s: float) -> None:
        if not pid:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)

    def status(self, *, probe_timeout_s: float = 1.0) -> EngineStatus:
        meta = self._read(self.meta_file)
        if meta is None:
            return EngineStatus(EngineState.STOPPED)
        sup = self._read(self.sup_file)
        sup_alive = _alive(meta.get("supervisor_pid"), meta.get("supervisor_create_time"))
        child_alive = bool(sup) and _alive(sup.get("child_pid"))  # type: ignore[union-attr]
        result = None
        if sup_alive and child_alive and not meta.get("stopped_at"):
            spec = EngineSpec.from_json(meta["spec"])
            result = probe(spec, loaded=bool(sup and sup.get("loaded")), timeout_s=probe_timeout_s)
        tail: tuple[str, ...] = ()
        status = derive_status(meta, sup, supervisor_alive=sup_alive, child_alive=child_alive, probe_result=result)
        if sup is None and not sup_alive and not meta.get("stopped_at"):
            err = " ".join(tail_lines(self.dir / "supervisor.err", 5))
            from dataclasses import replace

            status = replace(status, reason=f"{status.reason}: {err}" if err else status.reason)
        if status.state in (EngineState.FAILED, EngineState.UNHEALTHY):
            tail = tuple(x.text for x in read_stamped(self.log_file, 30))
            from dataclasses import replace

            status = replace(status, log_tail=tail)
        return status

    def logs(self, tail: int = 200) -> list[str]:
        return tail_lines(self.log_file, tail)

    def engine_pid(self) -> int | None:
        sup = self._read(self.sup_file)
        pid = sup.get("child_pid") if sup else None
        return pid if _alive(pid) else None

    # -- helpers ------------------------------------------------------------------------
    def _rotate_log(self) -> None:
        if self.log_file.exists():
            os.replace(self.log_file, self.log_file.with_suffix(".log.1"))

    @staticmethod
    def _read(path: Path) -> dict[str, Any] | None:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None
