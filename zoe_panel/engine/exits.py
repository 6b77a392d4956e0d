"""Exit codes as the shell and Docker report them (128 + N: killed by signal N), in words."""

from __future__ import annotations

import signal

SIGILL_EXIT = 128 + signal.SIGILL
SIGKILL_EXIT = 128 + signal.SIGKILL

_HINTS = {
    SIGKILL_EXIT: " (the kernel's OOM killer, or kill -9: see the diagnosis)",
    SIGILL_EXIT: " (an instruction this CPU cannot run: see the diagnosis)",
}


def exit_code_of(returncode: int | None) -> int | None:
    """Popen's -N (killed by signal N) as the shell and Docker report it: 128 + N."""
    if returncode is None:
        return None
    return 128 - returncode if returncode < 0 else returncode


def describe_exit(code: int | None) -> str:
    if code is None:
        return "unknown exit code"
    if code > 128:
        try:
            name = signal.Signals(code - 128).name
        except ValueError:
            name = f"signal {code - 128}"
        return f"exit code {code}, killed by {name}{_HINTS.get(code, '')}"
    return f"exit code {code}"
