"""Rows about past runs: predicted vs reported vs measured. Shared by the History page and the CLI."""

from __future__ import annotations

import csv
import io
from typing import Any

from zoe_panel.engine.loadlog import load_summary, progress_text
from zoe_panel.history import History, Run
from zoe_panel.memory import measured_bytes

MIB = 1024 * 1024


def run_row(history: History, run: Run) -> dict[str, Any]:
    spec, est = run.spec, run.estimate
    reported = load_summary(history.events(run.run_id))
    measured = measured_bytes(run)
    at_ready = run.predicted_at_ready_bytes
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
        "predicted_total_bytes": run.predicted_total_bytes,
        "at_ready_bytes": at_ready,
        "measured_peak_bytes": measured,
        # measured vs predicted at READY; None for a failed load (see load_progress)
        "error_pct": round(100.0 * (measured - at_ready) / at_ready, 1) if measured and at_ready else None,
        "after_load_cap_bytes": run.after_load_cap_bytes,
        "ready_rss_bytes": run.ready_rss_bytes,
        "growth_after_ready_bytes": run.growth_after_ready_bytes,
        "growth_of_cap_pct": (
            round(100.0 * run.growth_after_ready_bytes / run.after_load_cap_bytes, 1)
            if run.growth_after_ready_bytes is not None and run.after_load_cap_bytes
            else None
        ),
        "load_progress": run.load_progress or None,
        "load_progress_text": progress_text(run.load_progress),
        "peak_ram_used_bytes": run.peak_ram_used_bytes,
        "restarts": run.restarts,
        "exit_code": run.exit_code,
        "reason": run.reason or "",
        "diagnosis": run.diagnosis or "",
        "engine_version": run.engine_version or "",
        "power_mode": run.power_mode or "",
    }
    row.update(power_of(history.chat_stats(run_id=run.run_id)))
    return row


def power_of(chats: list[dict[str, Any]]) -> dict[str, Any]:
    """A run's (or a suite's) power while generating: the median of its replies' mean watts and
    tokens per joule, where a power source measured them."""
    import statistics

    watts = [c["mean_power_w"] for c in chats if c.get("mean_power_w") is not None]
    tpj = [c["tokens_per_j"] for c in chats if c.get("tokens_per_j") is not None]
    return {
        "mean_power_w": round(statistics.median(watts), 2) if watts else None,
        "tokens_per_j": round(statistics.median(tpj), 4) if tpj else None,
    }


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
