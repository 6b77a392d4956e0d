"""Engine log lines: ``<unix time> <text>`` as the supervisor writes them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LogLine:
    t: float
    text: str

    def render(self) -> str:
        import time

        stamp = time.strftime("%H:%M:%S", time.localtime(self.t))
        return f"{stamp}.{int(self.t % 1 * 1000):03d} {self.text}"


def parse_stamped(line: str) -> LogLine:
    head, _, text = line.partition(" ")
    try:
        return LogLine(float(head), text)
    except ValueError:
        return LogLine(0.0, line)


def tail_lines(path: Path, n: int, *, chunk: int = 65536) -> list[str]:
    """The last ``n`` lines of a file without reading all of it (logs grow for days)."""
    if n <= 0:
        return []
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            end = f.tell()
            data = b""
            pos = end
            while pos > 0 and data.count(b"\n") <= n:
                step = min(chunk, pos)
                pos -= step
                f.seek(pos)
                data = f.read(step) + data
    except FileNotFoundError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    return lines[-n:]


def read_stamped(path: Path, n: int) -> list[LogLine]:
    return [parse_stamped(x) for x in tail_lines(path, n)]
