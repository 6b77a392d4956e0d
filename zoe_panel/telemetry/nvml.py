"""Discrete NVIDIA GPUs through NVML (nvidia-ml-py, imported as ``pynvml``).

Host memory still comes from /proc/meminfo; NVML adds GPU memory, utilisation, power and
temperature. Metrics a device does not support (Orin reports memory as Not Supported) are None.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from zoe_panel.errors import TelemetryUnavailable
from zoe_panel.telemetry.base import Sample
from zoe_panel.telemetry.host import HostSource


class NvmlSource:
    name = "nvml"

    def __init__(self, index: int = 0, meminfo: Path = Path("/proc/meminfo")) -> None:
        self.index = index
        self.host = HostSource(meminfo)
        self._handle: Any = None
        self._lock = threading.Lock()
        self.device_name = ""

    def _ensure(self) -> Any:
        # Lazy: nvmlInit runs in whichever thread samples first (the sampler), never at import.
        with self._lock:
            if self._handle is None:
                import pynvml

                try:
                    pynvml.nvmlInit()
                    if pynvml.nvmlDeviceGetCount() <= self.index:
                        raise TelemetryUnavailable(f"NVML sees no GPU {self.index}")
                    self._handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
                    self.device_name = str(pynvml.nvmlDeviceGetName(self._handle))
                except pynvml.NVMLError as e:
                    raise TelemetryUnavailable(f"NVML: {e}") from None
            return self._handle

    def is_available(self) -> tuple[bool, str]:
        try:
            self._ensure()
        except TelemetryUnavailable as e:
            return False, str(e)
        except ImportError:
            return False, "nvidia-ml-py is not installed"
        return True, f"NVML: {self.device_name}"

    @staticmethod
    def _try(fn: Any, *args: Any) -> Any:
        import pynvml

        try:
            return fn(*args)
        except pynvml.NVMLError:  # NotSupported on Orin, or a transient failure
            return None

    def sample(self) -> Sample:
        import dataclasses

        import pynvml

        h = self._ensure()
        base = self.host.sample()
        mem = self._try(pynvml.nvmlDeviceGetMemoryInfo, h)
        util = self._try(pynvml.nvmlDeviceGetUtilizationRates, h)
        power_mw = self._try(pynvml.nvmlDeviceGetPowerUsage, h)
        temp = self._try(pynvml.nvmlDeviceGetTemperature, h, pynvml.NVML_TEMPERATURE_GPU)
        return dataclasses.replace(
            base,
            source=self.name,
            gpu_mem_used_bytes=int(mem.used) if mem else None,
            gpu_mem_total_bytes=int(mem.total) if mem else None,
            gpu_util_pct=float(util.gpu) if util else None,
            power_w=power_mw / 1000.0 if power_mw is not None else None,
            temp_c=float(temp) if temp is not None else None,
        )

    def engine_gpu_bytes(self, pid: int) -> int | None:
        import pynvml

        procs = self._try(pynvml.nvmlDeviceGetComputeRunningProcesses, self._ensure()) or []
        used = [p.usedGpuMemory for p in procs if p.pid == pid and p.usedGpuMemory is not None]
        return int(sum(used)) if used else None

    def free_gpu_bytes(self) -> int | None:
        import pynvml

        mem = self._try(pynvml.nvmlDeviceGetMemoryInfo, self._ensure())
        return int(mem.free) if mem else None

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                import pynvml

                try:
                    pynvml.nvmlShutdown()
                except pynvml.NVMLError:
                    pass
                self._handle = None


def gpu_memory(index: int = 0) -> tuple[int, int] | None:
    """(free, total) bytes of GPU ``index`` straight from NVML, or None without one. For the
    estimate, whoever asks (the CLI has no sampler): whether the GPU is discrete must not depend on
    which telemetry source the panel's sampler happened to pick."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    try:
        if pynvml.nvmlDeviceGetCount() <= index:
            return None
        mem = pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(index))
        return int(mem.free), int(mem.total)
    except pynvml.NVMLError:
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass
