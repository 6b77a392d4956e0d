"""Process backend: native llama-server or llama-cpp-python's server under a detached supervisor.

Files under ``<state>/engine/``: ``engine.json`` (what the panel started: run id, spec, argv),
``supervisor.json`` (what the supervisor saw: pids, phase, exit code), ``engine.log``.
Status is derived from these plus /proc and a health probe on every read.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psutil

from zoe_panel.engine import flavors
from zoe_panel.engine.base import EngineSpec, EngineState, EngineStatus
from zoe_panel.engine.exits import describe_exit
from zoe_panel.engine.health import Probe, check_port_free, probe
from zoe_panel.engine.logfile import read_stamped, tail_lines
from zoe_panel.errors import EngineError, EngineNotRunning, ZoePanelError
from zoe_panel.jsonfile import StateFileError, make_private_dir, read_state, write_json_atomic
from zoe_panel.settings import Settings


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    alive: bool


def _alive(pid: int | None, create_time: float | None = None, exe: str = "") -> bool:
    """The process runs and, where recorded, is the same one: its start time (a recycled pid starts
    later) and its executable match what was written when it was spawned."""
    if not pid:
        return False
    try:
        p = psutil.Process(int(pid))
        with p.oneshot():
            if p.status() == psutil.STATUS_ZOMBIE:
                return False
            if create_time is not None and abs(p.create_time() - float(create_time)) > 0.05:
                return False
            if exe:
                try:
                    return bool(p.exe() == exe)
                except psutil.AccessDenied:
                    return True
            return True
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError, TypeError):
        return False


def _child_alive(sup: dict[str, Any] | None) -> bool:
    if not sup:
        return False
    return _alive(sup.get("child_pid"), sup.get("child_create_time"), sup.get("child_exe") or "")


def _signal_group(pid: int | None, sig: int, *, leader: int | None) -> None:
    """Signal ``pid``'s process group, only when that group is the supervisor's own (the engine
    shares it): a recycled pid in another group is left alone."""
    if not pid:
        return
    try:
        pgid = os.getpgid(int(pid))
        if leader is not None and pgid != int(leader):
            return
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError, ValueError, TypeError):
        pass


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
            pid=pid,  # the process that died: its pid names it in the kernel's OOM record
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
            restarting=True,
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
    def is_available(self) -> tuple[bool, str]:
        """Local processes always run; whether the engine program is installed is the flavour's
        question (Start names what is missing)."""
        return True, "native process"

    def build_info(self) -> str:
        return ""  # the flavour knows the binary's build

    # -- lifecycle ----------------------------------------------------------------------
    def start(self, spec: EngineSpec, *, run_id: str) -> EngineStatus:
        flavor = flavors.get(spec.flavor)
        flavor.check_model(spec)
        argv = flavor.argv(spec, self.settings)
        check_port_free(spec.host, spec.port)
        make_private_dir(self.dir)  # engine commands, logs and the API key: the owner's only
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
        self._write_meta(meta)
        env = dict(os.environ)
        env.update(flavor.env_for(spec, self.settings))
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
            *(x for m in flavor.ready_markers for x in ("--ready-marker", m)),
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
            self._write_meta(meta)
            raise EngineError(meta["spawn_error"]) from None
        finally:
            err.close()
        meta["supervisor_pid"] = proc.pid
        meta["supervisor_create_time"] = psutil.Process(proc.pid).create_time()
        self._write_meta(meta)
        # Reap it if it dies while we still run, so it never lingers as a zombie of ours.
        import threading

        threading.Thread(target=proc.wait, daemon=True).start()
        return self.status()

    def stop(self, timeout_s: float) -> EngineStatus:
        try:
            meta = self._read_meta()
        except StateFileError as e:
            return self._stop_without_meta(e, timeout_s)
        if meta is None:
            raise EngineNotRunning("no engine is running (nothing to stop)")
        sup_pid = meta.get("supervisor_pid")
        alive = _alive(sup_pid, meta.get("supervisor_create_time"))
        sup = self._read_sup() or {}
        child_alive = _child_alive(sup)
        if not alive and not child_alive and meta.get("stopped_at"):
            raise EngineNotRunning("the engine is already stopped")
        self._terminate(sup_pid if alive else None, sup if child_alive else {}, timeout_s)
        meta["stopped_at"] = time.time()
        self._write_meta(meta)
        return self.status()

    def _terminate(self, sup_pid: int | None, sup: dict[str, Any], timeout_s: float) -> None:
        """SIGTERM the supervisor (it stops the engine), then SIGKILL the group of whatever is
        left. Every signal goes only to a process whose identity was checked just before."""
        if sup_pid:
            try:
                os.kill(int(sup_pid), signal.SIGTERM)
            except ProcessLookupError:
                pass
            self._wait_gone(sup_pid, timeout_s + 3.0)
        leader = sup.get("supervisor_pid") or sup_pid
        if sup_pid and _alive(sup_pid, None):
            _signal_group(sup_pid, signal.SIGKILL, leader=sup_pid)
        if _child_alive(sup):
            _signal_group(sup.get("child_pid"), signal.SIGKILL, leader=leader)
            self._wait_gone(sup.get("child_pid"), 5.0)

    def _stop_without_meta(self, err: StateFileError, timeout_s: float) -> EngineStatus:
        """engine.json is damaged: stop what supervisor.json names (identities checked), move the
        damaged file aside and start a fresh record, so the CLI and the page can always stop."""
        sup = self._read_sup() or {}
        sup_pid = sup.get("supervisor_pid")
        sup_alive = _alive(sup_pid, sup.get("supervisor_create_time"))
        if not sup_alive and not _child_alive(sup):
            owner = self._port_owner()
            if owner is None:
                self._reset_meta()
                raise EngineNotRunning(f"no engine is running; {err}") from None
            sup = {"child_pid": owner[0], "child_create_time": owner[1], "supervisor_pid": owner[2]}
        self._terminate(sup_pid if sup_alive else None, sup, timeout_s)
        self._reset_meta()
        return EngineStatus(EngineState.STOPPED, reason=f"stopped; {self.meta_file.name} was damaged and reset")

    def _port_owner(self) -> tuple[int, float, int] | None:
        """(pid, start time, process group) of an engine listening on the panel's engine port."""
        port = self.settings.engine_port
        try:
            for conn in psutil.net_connections(kind="tcp"):
                if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                    p = psutil.Process(conn.pid)
                    argv = p.cmdline()
                    # the panel starts every engine with its port on the command line
                    if str(port) in argv and any(a in ("--port", "-p") for a in argv):
                        return conn.pid, p.create_time(), os.getpgid(conn.pid)
        except (psutil.Error, OSError):
            return None
        return None

    def _reset_meta(self) -> None:
        if self.meta_file.exists():
            os.replace(self.meta_file, self.meta_file.with_name(self.meta_file.name + ".bad"))
        self._write_meta({"stopped_at": time.time(), "reset": "the previous file was damaged"})

    @staticmethod
    def _wait_gone(pid: int | None, timeout_s: float) -> None:
        if not pid:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)

    def status(self, *, probe_timeout_s: float = 1.0) -> EngineStatus:
        try:
            meta = self._read_meta()
        except StateFileError as e:
            return self._status_without_meta(e)
        if meta is None or "spec" not in meta:
            return EngineStatus(EngineState.STOPPED)
        sup = self._read_sup()
        sup_alive = _alive(meta.get("supervisor_pid"), meta.get("supervisor_create_time"))
        child_alive = _child_alive(sup)
        result = None
        if sup_alive and child_alive and not meta.get("stopped_at"):
            spec = EngineSpec.from_json(meta["spec"])
            result = probe(spec, loaded=bool(sup and sup.get("loaded")), timeout_s=probe_timeout_s)
        status = derive_status(meta, sup, supervisor_alive=sup_alive, child_alive=child_alive, probe_result=result)
        if sup is None and not sup_alive and not meta.get("stopped_at"):
            err = " ".join(tail_lines(self.dir / "supervisor.err", 5))
            status = replace(status, reason=f"{status.reason}: {err}" if err else status.reason)
        if status.state in (EngineState.FAILED, EngineState.UNHEALTHY):
            status = replace(status, log_tail=tuple(x.text for x in read_stamped(self.log_file, 30)))
        return status

    def _status_without_meta(self, err: StateFileError) -> EngineStatus:
        """A damaged engine.json while the engine may still run: say so, never 'stopped' by mistake."""
        sup = self._read_sup() or {}
        if _alive(sup.get("supervisor_pid"), sup.get("supervisor_create_time")) or _child_alive(sup):
            return EngineStatus(
                EngineState.UNHEALTHY,
                pid=sup.get("child_pid"),
                run_id=sup.get("run_id"),
                reason=f"{err}. The engine still runs (pid {sup.get('child_pid')}): Stop works, and resets the file",
            )
        if self._port_owner() is not None:
            return EngineStatus(
                EngineState.UNHEALTHY,
                reason=f"{err}. An engine listens on port {self.settings.engine_port}: Stop works",
            )
        return EngineStatus(EngineState.STOPPED, reason=str(err))

    def logs(self, tail: int = 200) -> list[str]:
        return tail_lines(self.log_file, tail)

    def engine_pid(self) -> int | None:
        sup = self._read_sup()
        return sup.get("child_pid") if sup and _child_alive(sup) else None

    # -- helpers ------------------------------------------------------------------------
    def _rotate_log(self) -> None:
        if self.log_file.exists():
            os.replace(self.log_file, self.log_file.with_suffix(".log.1"))

    def _read_meta(self) -> dict[str, Any] | None:
        """engine.json, shape-checked: StateFileError (naming the file and the reset) if damaged."""
        meta = read_state(self.meta_file, dict)
        if meta is None or ("spec" not in meta and meta.get("stopped_at")):
            return meta
        problems = []
        try:
            EngineSpec.from_json(meta["spec"])
        except (KeyError, TypeError, ValueError, ZoePanelError) as e:
            problems.append(f"its engine settings do not parse ({type(e).__name__}: {str(e)[:120]})")
        for key in ("supervisor_pid", "supervisor_create_time", "started_at", "stopped_at"):
            if meta.get(key) is not None and (isinstance(meta[key], bool) or not isinstance(meta[key], (int, float))):
                problems.append(f"{key} is {meta[key]!r}, not a number")
        if problems:
            raise StateFileError(self.meta_file, "; ".join(problems))
        return meta

    def _read_sup(self) -> dict[str, Any] | None:
        """supervisor.json; the supervisor rewrites it atomically, so a damaged one is treated as
        absent (never as a pid to signal)."""
        try:
            sup = read_state(self.sup_file, dict)
        except StateFileError:
            return None
        if sup is None:
            return None
        for key in ("child_pid", "supervisor_pid", "restarts", "exit_code"):
            if sup.get(key) is not None and (isinstance(sup[key], bool) or not isinstance(sup[key], int)):
                return None
        return sup

    def _write_meta(self, meta: dict[str, Any]) -> None:
        write_json_atomic(self.meta_file, meta, secret=True)  # the spec holds the engine's API key
