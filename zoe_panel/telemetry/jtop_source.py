"""Jetson boards through the jetson-stats service (``jtop``).

Memory headroom still comes from /proc/meminfo (MemAvailable; jtop has no such field). jtop adds
what only it reads on a Jetson: the GPU's share of RAM (``RAM.shared`` = NvMapMemUsed, kB), GPU
load, EMC bandwidth use, total power and temperatures. ``nvp model`` and jetson_clocks are kept
for the jetson-check report.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

from zoe_panel.errors import TelemetryUnavailable
from zoe_panel.telemetry.base import Sample
from zoe_panel.telemetry.host import HostSource

KB = 1024


class JetsonSource:
    name = "jetson"

    def __init__(self, meminfo: Path = Path("/proc/meminfo"), interval_s: float = 0.5) -> None:
        self.host = HostSource(meminfo)
        self.interval_s = interval_s
        self._jtop: Any = None
        self._lock = threading.Lock()

    def _ensure(self, attempts: int = 1) -> Any:
        with self._lock:
            if self._jtop is None:
                try:
                    from jtop import jtop
                except ImportError:
                    raise TelemetryUnavailable("jetson-stats is not installed") from None
                for attempt in range(attempts):
                    client = jtop(interval=self.interval_s)
                    try:
                        client.start()
                        self._jtop = client
                        break
                    except Exception as e:  # noqa: BLE001 - JtopException, or a pipe error while it restarts
                        _forget_service_connection()
                        last = f"jtop: {(str(e).splitlines() or [type(e).__name__])[0]}"
                        if "not active" in last or attempt == attempts - 1:
                            raise TelemetryUnavailable(last) from None
                        import time

                        time.sleep(0.5)
            return self._jtop

    def is_available(self) -> tuple[bool, str]:
        try:
            self._ensure(attempts=4)  # the service may be (re)starting: give it two seconds
        except TelemetryUnavailable as e:
            return False, str(e)
        return True, "jetson-stats (jtop service)"

    def sample(self) -> Sample:
        j = self._ensure()
        base = self.host.sample()
        if not j.is_alive():
            self.close()  # reconnect on the next sample, once the service is back
            raise TelemetryUnavailable("the jtop service connection closed")
        return sample_from_jtop(base, j.memory, j.gpu, j.power, j.temperature)

    def extras(self) -> dict[str, Any]:
        j = self._ensure()
        stats = j.stats
        return {"nvpmodel": str(stats.get("nvp model", "")), "jetson_clocks": str(stats.get("jetson_clocks", ""))}

    def engine_gpu_bytes(self, pid: int) -> int | None:
        try:
            rows = self._ensure().processes
        except Exception:  # noqa: BLE001 - per-process GPU memory is optional
            return None
        # rows: [pid, user, gpu, type, prio, state, cpu%, mem kB, gpu_mem kB, name]
        used = [int(r[8]) * KB for r in rows if r and int(r[0]) == pid]
        return sum(used) if used else None

    def close(self) -> None:
        with self._lock:
            if self._jtop is not None:
                try:
                    self._jtop.close()
                except Exception:  # noqa: BLE001
                    pass
                self._jtop = None
            _forget_service_connection()


def _forget_service_connection() -> None:
    """jtop talks through multiprocessing proxies, which cache one connection per address for the
    life of the process. After the service restarts that cached socket is dead and every new
    client fails with BrokenPipe; dropping the cache lets the panel reconnect without a restart."""
    try:
        from multiprocessing.managers import BaseProxy

        from jtop.service import JTOP_PIPE

        BaseProxy._address_to_local.pop(JTOP_PIPE, None)
    except Exception:  # noqa: BLE001 - best effort; worst case is the old behaviour
        pass


def sample_from_jtop(
    base: Sample, memory: dict[str, Any], gpu: dict[str, Any], power: dict[str, Any], temperature: dict[str, Any]
) -> Sample:
    """Fold jtop's dictionaries (kB, %, mW, °C) into a Sample in bytes, %, W, °C."""
    ram = memory.get("RAM", {})
    shared = ram.get("shared")
    loads = [g.get("status", {}).get("load") for g in gpu.values() if isinstance(g, dict)]
    loads = [float(x) for x in loads if x is not None]
    tot = power.get("tot", {}) if isinstance(power, dict) else {}
    rails = power.get("rail", {}) if isinstance(power, dict) else {}
    # Orin: one VDD_CPU_GPU_CV rail; Xavier: VDD_CPU and VDD_GPU apart (summed)
    cpu_gpu = [
        float(v["power"]) / 1000.0
        for k, v in rails.items()
        if isinstance(v, dict) and "power" in v and ("CPU" in k.upper() or "GPU" in k.upper())
    ]
    temps = [
        float(v["temp"])
        for v in temperature.values()
        if isinstance(v, dict) and v.get("online", True) and v.get("temp", -256) > -256
    ]
    emc = memory.get("EMC", {})
    return dataclasses.replace(
        base,
        source="jetson",
        gpu_mem_used_bytes=int(shared) * KB if shared is not None else base.gpu_mem_used_bytes,
        gpu_mem_total_bytes=int(ram["tot"]) * KB if "tot" in ram else base.gpu_mem_total_bytes,
        gpu_util_pct=max(loads) if loads else None,
        power_w=float(tot["power"]) / 1000.0 if "power" in tot else None,
        power_cpu_gpu_w=sum(cpu_gpu) if cpu_gpu else None,
        temp_c=max(temps) if temps else None,
        emc_pct=float(emc["val"]) if emc.get("online") and "val" in emc else None,
    )
