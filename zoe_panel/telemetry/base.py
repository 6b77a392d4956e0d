"""Telemetry samples and the source contract. Units are in the field names."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Sample:
    t: float  # unix time, seconds
    source: str
    ram_total_bytes: int
    ram_used_bytes: int  # total - available: what programs hold, page cache excluded
    ram_available_bytes: int  # MemAvailable, not MemFree
    ram_cached_bytes: int
    swap_total_bytes: int = 0
    swap_used_bytes: int = 0
    cpu_pct: float | None = None
    gpu_mem_used_bytes: int | None = None  # NVML used, or Jetson NvMap (GPU share of RAM)
    gpu_mem_total_bytes: int | None = None
    gpu_util_pct: float | None = None
    power_w: float | None = None  # board input (Jetson VDD_IN), or the GPU's board power (NVML)
    power_cpu_gpu_w: float | None = None  # Jetson: the CPU/GPU rail (VDD_CPU_GPU_CV on Orin)
    temp_c: float | None = None
    emc_pct: float | None = None
    engine_rss_bytes: int | None = None
    engine_gpu_bytes: int | None = None

    def with_engine(self, rss: int | None, gpu: int | None = None) -> Sample:
        return replace(self, engine_rss_bytes=rss, engine_gpu_bytes=gpu if gpu is not None else self.engine_gpu_bytes)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sample:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@runtime_checkable
class TelemetrySource(Protocol):
    name: str

    def is_available(self) -> tuple[bool, str]:
        """(usable here, why not / what it is)."""
        ...

    def sample(self) -> Sample: ...

    def engine_gpu_bytes(self, pid: int) -> int | None:
        """GPU memory held by one process, where the source can tell."""
        ...

    def close(self) -> None: ...
