"""Host memory and CPU: /proc/meminfo for memory (psutil has no NvMapMemUsed), psutil for CPU.

On a Jetson, /proc/meminfo's NvMapMemUsed is the GPU's share of the unified RAM; where it is
present it becomes ``gpu_mem_used_bytes`` even without the jtop service.
"""

from __future__ import annotations

import time
from pathlib import Path

import psutil

from zoe_panel.errors import TelemetryUnavailable
from zoe_panel.telemetry.base import Sample


def parse_meminfo(text: str) -> dict[str, int]:
    """``Key:   123 kB`` lines -> {Key: bytes}."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if not parts:
            continue
        try:
            value = int(parts[0])
        except ValueError:
            continue
        unit = parts[1].lower() if len(parts) > 1 else ""
        out[key.strip()] = value * 1024 if unit == "kb" else value
    return out


def sample_from_meminfo(mem: dict[str, int], *, t: float, source: str, cpu_pct: float | None) -> Sample:
    total = mem.get("MemTotal", 0)
    if "MemAvailable" in mem:
        available = mem["MemAvailable"]
    else:  # kernels before 3.14
        available = mem.get("MemFree", 0) + mem.get("Buffers", 0) + mem.get("Cached", 0)
    cached = mem.get("Cached", 0) + mem.get("SReclaimable", 0)
    swap_total = mem.get("SwapTotal", 0)
    nvmap = mem.get("NvMapMemUsed")
    return Sample(
        t=t,
        source=source,
        ram_total_bytes=total,
        ram_used_bytes=max(0, total - available),
        ram_available_bytes=available,
        ram_cached_bytes=cached,
        swap_total_bytes=swap_total,
        swap_used_bytes=max(0, swap_total - mem.get("SwapFree", 0)),
        cpu_pct=cpu_pct,
        gpu_mem_used_bytes=nvmap,
        gpu_mem_total_bytes=total if nvmap is not None else None,
    )


class HostSource:
    name = "host"

    def __init__(self, meminfo: Path = Path("/proc/meminfo")) -> None:
        self.meminfo = meminfo
        psutil.cpu_percent(interval=None)  # prime: the first call always returns 0.0

    def is_available(self) -> tuple[bool, str]:
        if not self.meminfo.exists():
            return False, f"{self.meminfo} not found"
        return True, "psutil + /proc/meminfo"

    def read_meminfo(self) -> dict[str, int]:
        try:
            return parse_meminfo(self.meminfo.read_text())
        except OSError as e:
            raise TelemetryUnavailable(f"cannot read {self.meminfo}: {e}") from None

    def sample(self) -> Sample:
        return sample_from_meminfo(
            self.read_meminfo(), t=time.time(), source=self.name, cpu_pct=psutil.cpu_percent(interval=None)
        )

    def engine_gpu_bytes(self, pid: int) -> int | None:
        return None

    def close(self) -> None:
        return None
