"""The after-load memory alarm: available memory fell below the safety floor while the engine runs.

An engine that fits at READY can still run a 16 GB board out of memory an hour later: its prompt
cache and context checkpoints grow while it serves. The alarm is raised once per episode (a toast
in the panel, a line in the audit log) and cleared with some hysteresis; ``status --json`` reports
it as ``memory_alarm``. The offer that goes with it: restart with a smaller prompt cache.

Pure decisions (``check``, ``smaller_cache``) plus ``AlarmWatch``, which keeps the episode and
writes it to the state folder so that the CLI (another process) reports the same episode.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from zoe_panel.engine.base import EngineState, EngineStatus
from zoe_panel.jsonfile import read_cache, write_json_atomic
from zoe_panel.telemetry.base import Sample

MIB = 1024 * 1024
CLEAR_MARGIN = 64 * MIB  # cleared only once available is this far back above the floor
ALARM_FILE = "memory_alarm.json"
RUNNING = (EngineState.READY, EngineState.UNHEALTHY)


@dataclass(frozen=True)
class MemoryAlarm:
    since: float
    available_bytes: int
    floor_bytes: int
    run_id: str = ""
    engine_rss_bytes: int | None = None
    growth_bytes: int | None = None  # the engine's RSS above its READY level
    cache_ram_mib: int | None = None
    suggested_cache_ram_mib: int | None = None

    def message(self) -> str:
        parts = [
            f"Memory is low: {self.available_bytes / MIB:.0f} MiB available, below the "
            f"{self.floor_bytes / MIB:.0f} MiB floor, while the engine runs."
        ]
        if self.growth_bytes:
            parts.append(f"The engine has grown by {self.growth_bytes / MIB:.0f} MiB since READY.")
        if self.cache_ram_mib and self.suggested_cache_ram_mib is not None:
            parts.append(
                f"Its prompt cache may hold up to {self.cache_ram_mib} MiB: restart with "
                f"{self.suggested_cache_ram_mib} MiB to stay above the floor."
            )
        return " ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"message": self.message()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MemoryAlarm:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def smaller_cache(cache_ram_mib: int, available_bytes: int, floor_bytes: int) -> int:
    """A prompt cache cap that gives back what is missing under the floor, and at least halves it."""
    short_mib = max(0, (floor_bytes - available_bytes + CLEAR_MARGIN) // MIB)
    return max(0, min(cache_ram_mib // 2, cache_ram_mib - short_mib) // 64 * 64)


def check(
    sample: Sample,
    status: EngineStatus,
    floor_bytes: int,
    *,
    ready_rss_bytes: int | None = None,
    current: MemoryAlarm | None = None,
) -> MemoryAlarm | None:
    """The alarm for this sample: raised below the floor while the engine serves, kept until
    available memory is back above the floor by a margin, gone when the engine stops."""
    if status.state not in RUNNING or floor_bytes <= 0:
        return None
    available = sample.ram_available_bytes
    if current is not None and current.run_id == (status.run_id or ""):
        if available >= floor_bytes + CLEAR_MARGIN:
            return None
        return current
    if available >= floor_bytes:
        return None
    cache = status.spec.cache_ram_mib if status.spec is not None else None
    rss = sample.engine_rss_bytes
    growth = rss - ready_rss_bytes if rss is not None and ready_rss_bytes is not None else None
    return MemoryAlarm(
        since=sample.t,
        available_bytes=available,
        floor_bytes=floor_bytes,
        run_id=status.run_id or "",
        engine_rss_bytes=rss,
        growth_bytes=max(0, growth) if growth is not None else None,
        cache_ram_mib=cache,
        suggested_cache_ram_mib=smaller_cache(cache, available, floor_bytes) if cache else None,
    )


class AlarmWatch:
    """The panel's episode: raised and cleared once each, kept in the state folder."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / ALARM_FILE
        self.current: MemoryAlarm | None = read_alarm(state_dir)

    def observe(
        self, sample: Sample, status: EngineStatus, floor_bytes: int, *, ready_rss_bytes: int | None = None
    ) -> str | None:
        """'raised', 'cleared' or None (no change)."""
        new = check(sample, status, floor_bytes, ready_rss_bytes=ready_rss_bytes, current=self.current)
        before = self.current
        self.current = new
        if new is not None and (before is None or before.since != new.since):
            self._write(new)
            return "raised"
        if new is None and before is not None:
            self._write(None)
            return "cleared"
        return None

    def _write(self, alarm: MemoryAlarm | None) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.path, {"alarm": alarm.to_json() if alarm else None, "t": time.time()})
        except OSError:
            pass  # the alarm still shows in this process; the CLI then judges by itself


def read_alarm(state_dir: Path) -> MemoryAlarm | None:
    data = read_cache(state_dir / ALARM_FILE, dict)
    raw = data.get("alarm") if isinstance(data, dict) else None
    if not isinstance(raw, dict):
        return None
    try:
        return MemoryAlarm.from_json(raw)
    except TypeError:
        return None
