"""Rows about past runs: predicted vs reported vs measured. Shared by the History page and the CLI."""

from __future__ import annotations

import csv
import io
from typing import Any

from zoe_panel.engine.loadlog import load_summary
from zoe_panel.history import History
from zoe_panel.memory import measured_bytes

MIB = 1024 * 1024


def run_row(history: History, run: dict[str, Any]) -> dict[str, Any]:
    spec = run.get("spec") or {}
    est = run.get("estimate") or {}
    reported = load_summary(history.events(run["run_id"]))
    measured = measured_bytes(run)
    predicted = est.get("total_bytes")
    row: dict[str, Any] = {
        "run_id": run["run_id"],
        "started_at": run.get("started_at"),
        "model": run.get("model"),
        "outcome": run.get("outcome"),
        "flavor": run.get("flavor"),
        "backend": run.get("backend"),
        "ctx": spec.get("ctx"),
        "cache": f"{spec.get('cache_type_k')}/{spec.get('cache_type_v')}" if spec else None,
        "parallel": spec.get("parallel"),
        "gpu_layers": spec.get("n_gpu_layers"),
        "time_to_ready_s": run.get("time_to_ready_s"),
        "kv_predicted_bytes": est.get("kv_bytes"),
        "kv_reported_bytes": reported.get("kv_cache"),
        "predicted_total_bytes": predicted,
        "measured_peak_bytes": measured,
        "error_pct": round(100.0 * (measured - predicted) / predicted, 1) if measured and predicted else None,
        "peak_ram_used_bytes": run.get("peak_ram_used_bytes"),
        "restarts": run.get("restarts"),
        "exit_code": run.get("exit_code"),
        "reason": run.get("reason") or "",
        "diagnosis": run.get("diagnosis") or "",
    }
    return row


def runs_rows(history: History, *, model: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
    return [run_row(history, r) for r in history.runs(model=model, limit=limit)]


def to_csv(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
