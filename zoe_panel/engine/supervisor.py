"""The detached owner of one engine process: ``python -m zoe_panel.engine.supervisor``.

Why a supervisor and not a bare Popen from the panel: the panel can be restarted (or killed)
while the engine keeps running, yet someone must still (1) stamp each log line with wall-clock
time for the load timeline, (2) record the exit code, which only a parent can read, and (3)
apply the restart policy. The supervisor is a session leader, so the panel's death never
reaches it, and the engine shares its process group so one ``killpg`` ends both.

State lives in ``<state>/supervisor.json`` (replaced atomically), the log in ``<state>/engine.log``
as ``<unix time> <line>``.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from zoe_panel.engine.exits import exit_code_of
from zoe_panel.jsonfile import write_json_atomic

ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
STABLE_S = 600.0  # uptime after which the restart budget is refilled


def process_identity(pid: int) -> tuple[float | None, str]:
    """(start time, executable) of a live process, as psutil reports them; (None, '') if gone."""
    import psutil

    try:
        p = psutil.Process(pid)
        with p.oneshot():
            created = p.create_time()
            try:
                exe = p.exe()
            except (psutil.AccessDenied, psutil.ZombieProcess):
                exe = ""
        return created, exe
    except psutil.Error:
        return None, ""


class Supervisor:
    def __init__(self, args: argparse.Namespace) -> None:
        self.state_dir = Path(args.state)
        self.state_file = self.state_dir / "supervisor.json"
        self.log_path = self.state_dir / "engine.log"
        self.argv: list[str] = args.argv
        self.run_id: str = args.run_id
        self.policy: str = args.restart
        self.restart_max: int = args.restart_max
        self.stop_timeout: float = args.stop_timeout
        self.ready_markers: tuple[str, ...] = tuple(args.ready_marker)
        self.stopping = threading.Event()
        self.child: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.exit_codes: list[int] = []
        self.loaded = False
        self.identity = process_identity(os.getpid())
        self.child_identity: tuple[float | None, str] = (None, "")

    def write_state(self, phase: str, **extra: Any) -> None:
        child = self.child
        data = {
            "run_id": self.run_id,
            "supervisor_pid": os.getpid(),
            "supervisor_create_time": self.identity[0],
            "child_pid": child.pid if child else None,
            # Who the child is, beyond its pid: a pid is reused once the engine is gone, and Stop
            # must never signal a stranger (process.py checks both before every signal).
            "child_create_time": self.child_identity[0],
            "child_exe": self.child_identity[1],
            "phase": phase,
            "restarts": self.restarts,
            "exit_codes": self.exit_codes,
            "loaded": self.loaded,
            "updated_at": time.time(),
        }
        data.update(extra)
        write_json_atomic(self.state_file, data)

    def on_term(self, signum: int, _frame: Any) -> None:
        self.stopping.set()
        child = self.child
        if child and child.poll() is None:
            try:
                child.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            threading.Thread(target=self._kill_later, args=(child,), daemon=True).start()

    def _kill_later(self, child: subprocess.Popen[bytes]) -> None:
        try:
            child.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            self.log_line(f"zoe-panel: engine ignored SIGTERM for {self.stop_timeout:.0f} s, sending SIGKILL")
            child.kill()

    def log_line(self, text: str, out: IO[str] | None = None) -> None:
        line = f"{time.time():.6f} {text}\n"
        if out is not None:
            out.write(line)
            out.flush()
        else:
            with self.log_path.open("a", encoding="utf-8") as f:
                f.write(line)

    def run_once(self) -> int:
        self.loaded = False
        self.child = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        started = time.time()
        self.child_identity = process_identity(self.child.pid)
        self.write_state("running", child_started_at=started)
        assert self.child.stdout is not None
        with self.log_path.open("a", encoding="utf-8") as out:
            for raw in iter(self.child.stdout.readline, b""):
                text = ANSI_RE.sub("", raw.decode("utf-8", "replace").rstrip("\r\n"))
                self.log_line(text, out)
                # Once a marker is seen the engine had loaded: a later crash is worth a restart, a crash
                # before it is a configuration problem (OOM at load, bad model) a restart only repeats.
                if not self.loaded and any(m in text for m in self.ready_markers):
                    self.loaded = True
                    self.write_state("running", child_started_at=started)
        code = exit_code_of(self.child.wait()) or 0
        if time.time() - started > STABLE_S:
            self.restarts = 0
        return code

    def main(self) -> int:
        signal.signal(signal.SIGTERM, self.on_term)
        signal.signal(signal.SIGINT, self.on_term)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        while True:
            try:
                code = self.run_once()
            except OSError as e:
                self.log_line(f"zoe-panel: cannot start the engine: {e}")
                self.write_state("exited", exit_code=127, reason=f"cannot start the engine: {e}")
                return 1
            self.exit_codes.append(code)
            if self.stopping.is_set():
                self.log_line(f"zoe-panel: engine stopped (exit code {code})")
                self.write_state("stopped", exit_code=code)
                return 0
            self.log_line(f"zoe-panel: engine exited with code {code}")
            if not self._should_restart(code):
                self.write_state("exited", exit_code=code, reason=self._reason(code))
                return 0
            self.restarts += 1
            delay = min(30.0, 0.5 * 2 ** (self.restarts - 1))
            self.log_line(f"zoe-panel: restart {self.restarts}/{self.restart_max} in {delay:.1f} s (on-failure)")
            self.write_state("backoff", exit_code=code, restart_at=time.time() + delay)
            if self.stopping.wait(delay):
                self.write_state("stopped", exit_code=code)
                return 0

    def _should_restart(self, code: int) -> bool:
        return (
            self.policy == "on-failure"
            and code != 0
            and self.loaded  # a failed load repeats itself: do not spin
            and self.restarts < self.restart_max
        )

    def _reason(self, code: int) -> str:
        if self.policy == "on-failure" and code != 0 and not self.loaded:
            return "the engine failed while loading; not restarted, since the same settings would fail again"
        if self.policy == "on-failure" and self.restarts >= self.restart_max and code != 0:
            return f"crash loop: gave up after {self.restarts} restarts (exit codes {self.exit_codes})"
        return ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="zoe-panel-supervisor")
    p.add_argument("--state", required=True)
    p.add_argument("--run-id", required=True)
    p.add_argument("--restart", choices=("no", "on-failure"), default="no")
    p.add_argument("--restart-max", type=int, default=3)
    p.add_argument("--stop-timeout", type=float, default=10.0)
    p.add_argument("--ready-marker", action="append", default=[], help="a log line meaning the model loaded")
    p.add_argument("argv", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    if args.argv and args.argv[0] == "--":
        args.argv = args.argv[1:]
    if not args.argv:
        p.error("no engine command given")
    return Supervisor(args).main()


if __name__ == "__main__":
    sys.exit(main())
