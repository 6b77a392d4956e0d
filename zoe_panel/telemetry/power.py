"""Power and energy over a stretch of work (one reply, one suite prompt): mean watts and tokens per
joule. Sources, best first:
- RAPL energy counters under ``/sys/class/powercap`` (x86 hosts, where readable): exact joules;
- the sampler's power readings (jtop's VDD_IN rail on a Jetson, NVML's board power on a discrete
  GPU), averaged over the stretch.
No source: no figure (never a made-up one)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from zoe_panel.telemetry.ring import RingBuffer

POWERCAP = Path("/sys/class/powercap")


@dataclass(frozen=True)
class RaplZone:
    name: str
    energy: Path
    max_range_uj: int


def rapl_zones(root: Path = POWERCAP) -> list[RaplZone]:
    """Top-level RAPL package zones whose counter this process can read (sub-zones such as core
    and dram are inside their package's count, so they are not added again)."""
    zones = []
    for z in sorted(root.glob("intel-rapl:*")):
        if z.name.count(":") != 1:
            continue
        energy = z / "energy_uj"
        try:
            int(energy.read_text())
            max_range = int((z / "max_energy_range_uj").read_text())
            name = (z / "name").read_text().strip()
        except (OSError, ValueError):
            continue  # root-only on recent kernels: no figure rather than an error
        zones.append(RaplZone(name, energy, max_range))
    return zones


def rapl_read_uj(zones: list[RaplZone]) -> list[int]:
    return [int(z.energy.read_text()) for z in zones]


def rapl_joules(zones: list[RaplZone], before: list[int], after: list[int]) -> float:
    """Joules between two readings; a counter that wrapped (it does, every few minutes under load
    on big packages) adds its range."""
    total = 0
    for z, a, b in zip(zones, before, after, strict=True):
        total += b - a if b >= a else b + z.max_range_uj - a
    return total / 1e6


@dataclass(frozen=True)
class Energy:
    joules: float
    seconds: float
    source: str  # "rapl" | "jetson" | "nvml" | ...

    @property
    def mean_w(self) -> float:
        return self.joules / self.seconds if self.seconds > 0 else 0.0


class EnergyWindow:
    """``start()`` before the work, ``stop()`` after: the energy it took, or None."""

    def __init__(self, ring: RingBuffer | None, root: Path = POWERCAP) -> None:
        self.ring = ring
        self.zones = rapl_zones(root)
        self.t0 = 0.0
        self.before: list[int] = []

    def start(self) -> EnergyWindow:
        self.t0 = time.time()
        self.before = rapl_read_uj(self.zones) if self.zones else []
        return self

    def stop(self) -> Energy | None:
        t1 = time.time()
        seconds = max(1e-6, t1 - self.t0)
        if self.zones:
            try:
                return Energy(rapl_joules(self.zones, self.before, rapl_read_uj(self.zones)), seconds, "rapl")
            except (OSError, ValueError):
                pass
        if self.ring is None:
            return None
        # the sampler's readings in the window, and the last one before it (1 Hz: a short reply
        # may fall between two samples)
        samples = [s for s in self.ring.snapshot(since=self.t0 - 1.5) if s.power_w is not None and s.t <= t1 + 0.5]
        if not samples:
            return None
        mean = sum(float(s.power_w or 0.0) for s in samples) / len(samples)
        return Energy(mean * seconds, seconds, samples[-1].source)


def power_stats(energy: Energy | None, completion_tokens: int | None) -> dict[str, float | str]:
    """The fields a chat's stats gain: mean power, tokens per joule and the source; {} without one."""
    if energy is None:
        return {}
    out: dict[str, float | str] = {"mean_power_w": round(energy.mean_w, 3), "power_source": energy.source}
    tpj = tokens_per_joule(completion_tokens, energy)
    if tpj is not None:
        out["tokens_per_j"] = round(tpj, 4)
    return out


def tokens_per_joule(tokens: int | None, energy: Energy | None) -> float | None:
    if not tokens or energy is None or energy.joules <= 0:
        return None
    return tokens / energy.joules
