"""Rows about past runs: predicted vs reported vs measured. Shared by the History page and the CLI."""

from __future__ import annotations

import csv
import io
from typing import Any

from zoe_panel.engine.loadlog import load_summary
from zoe_panel.history import History, Run
from zoe_panel.memory import measured_bytes

MIB = 1024 * 1024


def run_row(history: History, run: Run) -> dict[str, Any]:
    spec, est = run.spec, run.estimate
    reported = load_summary(history.events(run.run_id))
    measured = measured_bytes(run)
    predicted = run.predicted_total_bytes
    row: dict[str, Any] = {
        "run_id": run.run_id,
        "started_at": run.started_at,
        "model": run.model,
        "outcome": run.outcome,
        "flavor": run.flavor,
        "backend": run.backend,
        "ctx": spec.get("ctx"),
        "cache": f"{spec.get('cache_type_k')}/{spec.get('cache_type_v')}" if spec else None,
        "parallel": spec.get("parallel"),
        "gpu_layers": spec.get("n_gpu_layers"),
        "time_to_ready_s": run.time_to_ready_s,
        "kv_predicted_bytes": est.get("kv_bytes"),
        "kv_reported_bytes": reported.get("kv_cache"),
        "predicted_total_bytes": predicted,
        "measured_peak_bytes": measured,
        "error_pct": round(100.0 * (measured - predicted) / predicted, 1) if measured and predicted else None,
        "peak_ram_used_bytes": run.peak_ram_used_bytes,
        "restarts": run.restarts,
        "exit_code": run.exit_code,
        "reason": run.reason or "",
        "diagnosis": run.diagnosis or "",
        "engine_version": run.engine_version or "",
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
