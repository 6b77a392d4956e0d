"""Pick the telemetry source: Jetson (jtop) first, then NVML, then the host; ZOE_TELEMETRY forces one."""

from __future__ import annotations

import logging
from collections.abc import Callable

from zoe_panel.errors import TelemetryUnavailable
from zoe_panel.telemetry.base import TelemetrySource

log = logging.getLogger(__name__)


def _jetson() -> TelemetrySource:
    from zoe_panel.telemetry.jtop_source import JetsonSource

    return JetsonSource()


def _nvml() -> TelemetrySource:
    from zoe_panel.telemetry.nvml import NvmlSource

    return NvmlSource()


def _host() -> TelemetrySource:
    from zoe_panel.telemetry.host import HostSource

    return HostSource()


FACTORIES: dict[str, Callable[[], TelemetrySource]] = {"jetson": _jetson, "nvml": _nvml, "host": _host}


def pick_source(choice: str = "auto") -> tuple[TelemetrySource, list[str]]:
    """(source, notes). Notes say why earlier candidates were skipped, for the Monitor page."""
    names = list(FACTORIES) if choice == "auto" else [choice]
    notes: list[str] = []
    for name in names:
        source: TelemetrySource | None
        try:
            source = FACTORIES[name]()
            ok, why = source.is_available()
        except Exception as e:  # noqa: BLE001 - an absent driver or service raises anything
            ok, why = False, f"{type(e).__name__}: {e}"
            source = None
        if ok and source is not None:
            return source, notes
        notes.append(f"{name}: {why}")
        if source is not None:
            source.close()
    if choice != "auto":
        raise TelemetryUnavailable(f"telemetry source {choice!r} is not available here: {notes[-1]}")
    raise TelemetryUnavailable("no telemetry source is available: " + "; ".join(notes))
