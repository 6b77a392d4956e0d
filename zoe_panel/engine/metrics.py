"""What the engine is doing right now: llama-server's /metrics (Prometheus text) and /slots."""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx

_LINE_RE = re.compile(r"^llamacpp:(\w+)(?:\{[^}]*\})?\s+([-\d.e+]+)$")


def parse_prometheus(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = _LINE_RE.match(line.strip())
        if m:
            out[m[1]] = float(m[2])
    return out


@dataclass(frozen=True)
class EngineLoad:
    requests_processing: int | None
    requests_deferred: int | None
    slots_busy: int | None
    slots_total: int | None
    tokens_predicted_total: float | None

    def text(self) -> str:
        parts = []
        if self.slots_busy is not None and self.slots_total:
            parts.append(f"{self.slots_busy}/{self.slots_total} slots busy")
        if self.requests_processing is not None:
            parts.append(f"{self.requests_processing} request(s) processing")
        if self.requests_deferred:
            parts.append(f"{self.requests_deferred} waiting")
        return " · ".join(parts) or "engine load unknown"


def engine_load(base_url: str, api_key: str = "", timeout_s: float = 1.0) -> EngineLoad:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    metrics: dict[str, float] = {}
    busy = total = None
    try:
        r = httpx.get(base_url + "/metrics", headers=headers, timeout=timeout_s)
        if r.status_code == 200:
            metrics = parse_prometheus(r.text)
    except httpx.HTTPError:
        pass
    try:
        r = httpx.get(base_url + "/slots", headers=headers, timeout=timeout_s)
        if r.status_code == 200:
            slots = r.json()
            total = len(slots)
            busy = sum(1 for s in slots if s.get("is_processing"))
    except (httpx.HTTPError, ValueError):
        pass

    def get(name: str) -> int | None:
        return int(metrics[name]) if name in metrics else None

    return EngineLoad(
        get("requests_processing"), get("requests_deferred"), busy, total, metrics.get("tokens_predicted_total")
    )
