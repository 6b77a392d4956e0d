"""Was a SIGKILL the kernel's OOM killer? Say so only with evidence.

A process killed with SIGKILL (exit 137) may have been killed by the OOM killer, by a user, a
script or a service manager. The diagnosis blames memory only when (a) the kernel's log records
an out-of-memory kill of that pid, or Docker reports the container OOM-killed, or (b) the memory
samples recorded while the engine ran show available memory nearly gone.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

LOW_FRACTION = 0.05  # available below 5 % of RAM ...
LOW_FLOOR_BYTES = 256 * 2**20  # ... or below 256 MiB counts as "memory ran out"


@dataclass(frozen=True)
class OomEvidence:
    kernel_record: str = ""  # the kernel (or Docker) line that names the kill
    min_available_bytes: int | None = None  # lowest MemAvailable seen while it ran
    total_bytes: int | None = None

    @property
    def memory_ran_low(self) -> bool:
        if self.min_available_bytes is None or not self.total_bytes:
            return False
        return self.min_available_bytes < max(LOW_FLOOR_BYTES, int(self.total_bytes * LOW_FRACTION))

    @property
    def is_oom(self) -> bool:
        return bool(self.kernel_record) or self.memory_ran_low

    def text(self) -> str:
        parts = []
        if self.kernel_record:
            parts.append(f"kernel log: {self.kernel_record}")
        if self.min_available_bytes is not None:
            parts.append(f"lowest available memory while it ran: {self.min_available_bytes / 2**30:.2f} GiB")
        return "; ".join(parts)


def kernel_oom_record(pid: int | None, log_text: str) -> str:
    """The kernel line recording an OOM kill of ``pid`` in a dmesg dump, or ''."""
    if not pid:
        return ""
    pattern = re.compile(rf"(Out of memory|oom-kill|Memory cgroup out of memory).*\b(pid[= ]?{pid}|process {pid})\b")
    for line in log_text.splitlines():
        if pattern.search(line):
            return line.strip()[-200:]
    return ""


def read_kernel_log(timeout_s: float = 2.0) -> str:
    """dmesg's text where readable (root, or kernel.dmesg_restrict=0); '' otherwise."""
    try:
        done = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout if done.returncode == 0 else ""


def evidence(pid: int | None, reason: str, available: Sequence[int], total: int | None) -> OomEvidence:
    record = "Docker reports the container was OOM-killed" if "OOM-killed" in reason else ""
    record = record or kernel_oom_record(pid, read_kernel_log())
    return OomEvidence(record, min(available) if available else None, total)
