"""History: a real SQLite file under the state folder. Runs, load events, samples, chat stats.

One connection per process, serialised by a lock (Streamlit sessions are threads); WAL mode so
the panel and the CLI can write at the same time. Writes are small and idempotent: a run row is
keyed by the engine's run id, and updates only fill what is still missing.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from zoe_panel.engine.loadlog import LoadEvent
from zoe_panel.telemetry.base import Sample

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    started_at REAL, ready_at REAL, ended_at REAL,
    outcome TEXT,                -- running | ready | failed | stopped
    model TEXT, model_path TEXT, model_size_bytes INTEGER,
    backend TEXT, flavor TEXT, engine_version TEXT,
    spec_json TEXT, estimate_json TEXT,
    reason TEXT, diagnosis TEXT, exit_code INTEGER, restarts INTEGER DEFAULT 0,
    baseline_ram_used_bytes INTEGER, baseline_gpu_bytes INTEGER,
    peak_ram_used_bytes INTEGER, peak_engine_rss_bytes INTEGER, peak_gpu_bytes INTEGER,
    time_to_ready_s REAL,
    ready_rss_bytes INTEGER, peak_after_ready_rss_bytes INTEGER, binary_rss_bytes INTEGER,
    load_progress_json TEXT, power_mode TEXT
);
CREATE INDEX IF NOT EXISTS runs_model ON runs(model);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT, t REAL, phase TEXT, bytes INTEGER, device TEXT, text TEXT, detail_json TEXT
);
CREATE INDEX IF NOT EXISTS events_run ON events(run_id, t);
CREATE TABLE IF NOT EXISTS samples (t REAL, run_id TEXT, json TEXT);
CREATE INDEX IF NOT EXISTS samples_t ON samples(t);
CREATE TABLE IF NOT EXISTS chat_stats (
    run_id TEXT, t REAL, ttft_ms REAL, prompt_tokens INTEGER, prompt_tokens_per_s REAL,
    completion_tokens INTEGER, gen_tokens_per_s REAL, source TEXT, suite TEXT, prompt TEXT,
    passed INTEGER, peak_ram_used_bytes INTEGER, mean_power_w REAL, tokens_per_j REAL, power_source TEXT
);
CREATE INDEX IF NOT EXISTS chat_run ON chat_stats(run_id);
CREATE TABLE IF NOT EXISTS suites (name TEXT PRIMARY KEY, json TEXT, updated_at REAL);
CREATE TABLE IF NOT EXISTS comparisons (t REAL, model TEXT, json TEXT);
CREATE TABLE IF NOT EXISTS audit (
    t REAL, client TEXT, action TEXT, target TEXT, outcome TEXT, detail TEXT
);
CREATE INDEX IF NOT EXISTS audit_t ON audit(t);
"""

RUN_FIELDS = (
    "run_id",
    "started_at",
    "ready_at",
    "ended_at",
    "outcome",
    "model",
    "model_path",
    "model_size_bytes",
    "backend",
    "flavor",
    "engine_version",
    "spec_json",
    "estimate_json",
    "reason",
    "diagnosis",
    "exit_code",
    "restarts",
    "baseline_ram_used_bytes",
    "baseline_gpu_bytes",
    "peak_ram_used_bytes",
    "peak_engine_rss_bytes",
    "peak_gpu_bytes",
    "time_to_ready_s",
    "ready_rss_bytes",
    "peak_after_ready_rss_bytes",
    "binary_rss_bytes",
    "load_progress_json",
    "power_mode",
)
# Columns added after the first release, with their types: an older history file gains them.
ADDED_RUN_COLUMNS = {
    "ready_rss_bytes": "INTEGER",
    "peak_after_ready_rss_bytes": "INTEGER",
    "binary_rss_bytes": "INTEGER",
    "load_progress_json": "TEXT",
    "power_mode": "TEXT",
}
ADDED_CHAT_COLUMNS = {"mean_power_w": "REAL", "tokens_per_j": "REAL", "power_source": "TEXT"}


class History:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        # Set when the file was damaged: it was kept aside and a fresh history started.
        self.recovered_from: Path | None = None
        try:
            self._db = self._open(path)
        except sqlite3.DatabaseError as e:
            self.recovered_from = _move_aside(path)
            log.error("history %s is damaged (%s): kept as %s, starting a new one", path, e, self.recovered_from)
            self._db = self._open(path)
            self.audit(
                "history reset", "recovered", client="panel", detail=f"damaged file kept as {self.recovered_from}"
            )

    def _open(self, path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(str(path), check_same_thread=False, timeout=10.0, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            with self._lock:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(SCHEMA)
                have = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
                for column, kind in ADDED_RUN_COLUMNS.items():
                    if column not in have:
                        db.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")
                have = {row[1] for row in db.execute("PRAGMA table_info(chat_stats)")}
                for column, kind in ADDED_CHAT_COLUMNS.items():
                    if column not in have:
                        db.execute(f"ALTER TABLE chat_stats ADD COLUMN {column} {kind}")
                db.execute("SELECT COUNT(*) FROM runs").fetchone()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    @property
    def notice(self) -> str:
        """What the operator should be told once, or ''."""
        if self.recovered_from is None:
            return ""
        return (
            f"The history database was damaged and could not be read. It was kept as {self.recovered_from.name} "
            "and a new, empty history was started."
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _exec(self, sql: str, args: Iterable[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, tuple(args))

    def _many(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(sql, [tuple(r) for r in rows])
                self._db.execute("COMMIT")
            except Exception:
                self._db.execute("ROLLBACK")
                raise

    # -- runs -----------------------------------------------------------------------------
    def upsert_run(self, run_id: str, **fields: Any) -> None:
        """Insert the run, or fill in fields; ``outcome``/``reason`` etc. overwrite, peaks take the max."""
        bad = set(fields) - set(RUN_FIELDS)
        if bad:
            raise ValueError(f"unknown run fields {bad}")
        self._exec("INSERT OR IGNORE INTO runs(run_id, outcome) VALUES (?, 'running')", (run_id,))
        if not fields:
            return
        sets = []
        args: list[Any] = []
        for k, v in fields.items():
            if k.startswith("peak_"):
                sets.append(f"{k} = MAX(COALESCE({k}, 0), ?)")
            elif k in (
                "ready_at",
                "time_to_ready_s",
                "baseline_ram_used_bytes",
                "baseline_gpu_bytes",
                "started_at",
                "ready_rss_bytes",
            ):
                sets.append(f"{k} = COALESCE({k}, ?)")  # first value wins
            else:
                sets.append(f"{k} = ?")
            args.append(v)
        self._exec(f"UPDATE runs SET {', '.join(sets)} WHERE run_id = ?", [*args, run_id])

    def run(self, run_id: str) -> Run | None:
        row = self._exec("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return _run_of(row) if row else None

    def runs(self, *, model: str | None = None, limit: int = 500) -> list[Run]:
        if model:
            rows = self._exec("SELECT * FROM runs WHERE model = ? ORDER BY started_at DESC LIMIT ?", (model, limit))
        else:
            rows = self._exec("SELECT * FROM runs ORDER BY started_at DESC LIMIT ?", (limit,))
        return [_run_of(r) for r in rows.fetchall()]

    # -- events and samples -------------------------------------------------------------------
    def add_events(self, run_id: str, events: Iterable[LoadEvent]) -> None:
        self._many(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)",
            ((run_id, e.t, e.phase, e.bytes, e.device, e.text[:500], json.dumps(e.detail)) for e in events),
        )

    def events(self, run_id: str) -> list[LoadEvent]:
        rows = self._exec("SELECT * FROM events WHERE run_id = ? ORDER BY t", (run_id,)).fetchall()
        return [
            LoadEvent(r["t"], r["phase"], r["text"], r["bytes"], r["device"] or "", json.loads(r["detail_json"]))
            for r in rows
        ]

    def last_event_t(self, run_id: str) -> float:
        row = self._exec("SELECT MAX(t) AS t FROM events WHERE run_id = ?", (run_id,)).fetchone()
        return float(row["t"]) if row and row["t"] is not None else 0.0

    def events_between(self, start: float, end: float) -> list[tuple[str, LoadEvent]]:
        rows = self._exec("SELECT * FROM events WHERE t BETWEEN ? AND ? ORDER BY t", (start, end)).fetchall()
        return [
            (
                r["run_id"],
                LoadEvent(r["t"], r["phase"], r["text"], r["bytes"], r["device"] or "", json.loads(r["detail_json"])),
            )
            for r in rows
        ]

    def runs_between(self, start: float, end: float) -> list[Run]:
        rows = self._exec(
            "SELECT * FROM runs WHERE started_at <= ? AND COALESCE(ended_at, ?) >= ? ORDER BY started_at",
            (end, end, start),
        ).fetchall()
        return [_run_of(r) for r in rows]

    def add_samples(self, samples: Iterable[Sample], run_id: str | None = None) -> None:
        self._many(
            "INSERT INTO samples VALUES (?, ?, ?)",
            ((s.t, run_id, json.dumps(s.to_json(), separators=(",", ":"))) for s in samples),
        )

    def samples(self, start: float, end: float) -> list[Sample]:
        rows = self._exec("SELECT json FROM samples WHERE t BETWEEN ? AND ? ORDER BY t", (start, end)).fetchall()
        return [Sample.from_json(json.loads(r["json"])) for r in rows]

    def prune(self, keep_days: float) -> int:
        cutoff = time.time() - keep_days * 86400
        cur = self._exec("DELETE FROM samples WHERE t < ?", (cutoff,))
        return cur.rowcount

    # -- chat stats --------------------------------------------------------------------------
    def add_chat_stats(
        self,
        run_id: str | None,
        stats: dict[str, Any],
        *,
        suite: str = "",
        prompt: str = "",
        passed: bool | None = None,
        peak_ram_used_bytes: int | None = None,
    ) -> None:
        self._exec(
            "INSERT INTO chat_stats (run_id, t, ttft_ms, prompt_tokens, prompt_tokens_per_s, completion_tokens, "
            "gen_tokens_per_s, source, suite, prompt, passed, peak_ram_used_bytes, mean_power_w, tokens_per_j, "
            "power_source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                time.time(),
                stats.get("ttft_ms"),
                stats.get("prompt_tokens"),
                stats.get("prompt_tokens_per_s"),
                stats.get("completion_tokens"),
                stats.get("gen_tokens_per_s"),
                stats.get("source"),
                suite,
                prompt[:2000],
                None if passed is None else int(passed),
                peak_ram_used_bytes,
                stats.get("mean_power_w"),
                stats.get("tokens_per_j"),
                stats.get("power_source"),
            ),
        )

    # -- engine comparisons ------------------------------------------------------------------
    def add_comparison(self, model: str, data: dict[str, Any]) -> None:
        self._exec("INSERT INTO comparisons VALUES (?, ?, ?)", (time.time(), model, json.dumps(data)))

    def comparisons(self, limit: int = 20) -> list[dict[str, Any]]:
        rows = self._exec("SELECT json FROM comparisons ORDER BY t DESC LIMIT ?", (limit,)).fetchall()
        return [json.loads(r["json"]) for r in rows]

    def last_chat_stats(self) -> dict[str, Any] | None:
        row = self._exec("SELECT * FROM chat_stats ORDER BY t DESC LIMIT 1").fetchone()
        return dict(row) if row else None

    def chat_stats(self, run_id: str | None = None, suite: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM chat_stats WHERE 1=1"
        args: list[Any] = []
        if run_id:
            sql, args = sql + " AND run_id = ?", [*args, run_id]
        if suite:
            sql, args = sql + " AND suite = ?", [*args, suite]
        return [dict(r) for r in self._exec(sql + " ORDER BY t", args).fetchall()]

    # -- prompt suites -----------------------------------------------------------------------
    def save_suite(self, name: str, data: dict[str, Any]) -> None:
        self._exec("INSERT OR REPLACE INTO suites VALUES (?, ?, ?)", (name, json.dumps(data), time.time()))

    def suite(self, name: str) -> dict[str, Any] | None:
        row = self._exec("SELECT json FROM suites WHERE name = ?", (name,)).fetchone()
        return json.loads(row["json"]) if row else None

    def suite_names(self) -> list[str]:
        return [r["name"] for r in self._exec("SELECT name FROM suites ORDER BY name").fetchall()]

    def delete_suite(self, name: str) -> None:
        self._exec("DELETE FROM suites WHERE name = ?", (name,))

    # -- audit ---------------------------------------------------------------------------------
    def audit(self, action: str, outcome: str, *, client: str = "", target: str = "", detail: str = "") -> None:
        self._exec(
            "INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?)",
            (time.time(), client[:100], action, target[:300], outcome, detail[:1000]),
        )

    def audit_log(self, limit: int = 1000) -> list[dict[str, Any]]:
        return [dict(r) for r in self._exec("SELECT * FROM audit ORDER BY t DESC LIMIT ?", (limit,)).fetchall()]


def _move_aside(path: Path) -> Path:
    """Keep a damaged database (and its WAL files) under a new name; never delete it."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    kept = path.with_name(f"{path.name}.damaged-{stamp}")
    os.replace(path, kept)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.replace(side, kept.with_name(kept.name + suffix))
    return kept


@dataclass(frozen=True)
class Run:
    """One engine run as History keeps it: what was asked, predicted, reported and measured."""

    run_id: str
    started_at: float | None = None
    ready_at: float | None = None
    ended_at: float | None = None
    outcome: str = "running"  # running | ready | failed | stopped
    model: str | None = None
    model_path: str | None = None
    model_size_bytes: int | None = None
    backend: str | None = None
    flavor: str | None = None
    engine_version: str | None = None
    spec: dict[str, Any] = field(default_factory=dict)  # the public spec (no key)
    estimate: dict[str, Any] = field(default_factory=dict)  # Estimate.to_json() at start
    reason: str | None = None
    diagnosis: str | None = None
    exit_code: int | None = None
    restarts: int = 0
    baseline_ram_used_bytes: int | None = None
    baseline_gpu_bytes: int | None = None
    peak_ram_used_bytes: int | None = None
    peak_engine_rss_bytes: int | None = None
    peak_gpu_bytes: int | None = None
    time_to_ready_s: float | None = None
    ready_rss_bytes: int | None = None  # the engine's RSS when it became READY
    peak_after_ready_rss_bytes: int | None = None  # its highest RSS while serving
    binary_rss_bytes: int | None = None  # resident pages of its binary and libraries
    # How far a failed load got: {"phase", "reported_bytes", "predicted_at_ready_bytes", "share"}
    load_progress: dict[str, Any] = field(default_factory=dict)
    power_mode: str | None = None  # nvpmodel mode (Jetson) or GPU performance state at start

    @property
    def predicted_total_bytes(self) -> int | None:
        value = self.estimate.get("total_bytes")
        return int(value) if value is not None else None

    @property
    def predicted_at_ready_bytes(self) -> int | None:
        """At READY; runs recorded before the after-load parts existed had only this, as the total."""
        value = self.estimate.get("at_ready_bytes", self.estimate.get("total_bytes"))
        return int(value) if value is not None else None

    @property
    def growth_after_ready_bytes(self) -> int | None:
        if self.ready_rss_bytes is None or self.peak_after_ready_rss_bytes is None:
            return None
        return max(0, int(self.peak_after_ready_rss_bytes) - int(self.ready_rss_bytes))

    @property
    def after_load_cap_bytes(self) -> int | None:
        value = self.estimate.get("after_load_bytes")
        return int(value) if value is not None else None


def _run_of(row: sqlite3.Row) -> Run:
    d = dict(row)
    for key in ("spec_json", "estimate_json", "load_progress_json"):
        raw = d.pop(key, None)
        d[key.removesuffix("_json")] = json.loads(raw) if raw else {}
    d["restarts"] = d.get("restarts") or 0
    d["outcome"] = d.get("outcome") or "running"
    known = {f.name for f in fields(Run)}
    return Run(**{k: v for k, v in d.items() if k in known})  # a newer panel's columns are ignored
