"""Side venvs under the panel's cache for tools the panel runs but never imports (llama.cpp's
converter with torch; vLLM with its own torch): where they live, pip inside them with Cancel, and
their size on disk."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any


def venv_python(root: Path) -> Path:
    return root / "bin" / "python"


def size_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def kill_on_cancel(proc: subprocess.Popen[Any], cancel: threading.Event | None) -> threading.Event:
    """Kill ``proc``'s process group when ``cancel`` is set; set the returned event when done."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.2):
            if cancel is not None and cancel.is_set():
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                return

    threading.Thread(target=watch, daemon=True).start()
    return done


def pip(py: Path, args: list[str], cancel: threading.Event | None) -> tuple[int, str, bool]:
    """Run pip in a venv: (exit code, its output, cancelled)."""
    cmd = [str(py), "-m", "pip", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    watcher = kill_on_cancel(proc, cancel)
    out = proc.communicate()[0]
    watcher.set()
    return proc.returncode, out, cancel is not None and cancel.is_set()
