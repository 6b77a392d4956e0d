"""The tuning sweep: every combination of the given settings, each started, measured with a prompt
suite, stopped; then the Pareto frontier of generation speed against peak memory and a
recommendation.

A sweep is a state file under ``state/sweeps``: its configurations and every finished result, saved
after each one, so a panel restarted mid-sweep resumes at the first unfinished configuration.
Each configuration's engine run and replies are in History like any other (the suite's rows carry
the sweep's id), so the sweep's table is also a view of History."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoe_panel.errors import ConfigError, ZoePanelError
from zoe_panel.jsonfile import read_cache, write_json_atomic

if TYPE_CHECKING:
    from zoe_panel.runtime import Runtime
    from zoe_panel.suites import Suite

# A short built-in set: two answers with a checkable fact, one free generation. On 2 cores a
# SmolLM2 configuration takes about 20 s to start, replay and stop.
BUILTIN = (
    ("What is the capital of France? Answer in one word.", ("paris",)),
    ("What is 12 plus 30? Answer with the number only.", ("42",)),
    ("Write two sentences about a lighthouse.", ()),
)
BUILTIN_NAME = "sweep-builtin"
DIMENSIONS = ("ctx", "cache_type", "ubatch", "threads", "parallel", "draft")
TOLERANCE_PCT = 5.0


def builtin_suite(max_tokens: int = 64) -> Suite:
    from zoe_panel.suites import Suite, SuitePrompt

    return Suite(BUILTIN_NAME, tuple(SuitePrompt(t, e) for t, e in BUILTIN), max_tokens=max_tokens)


@dataclass(frozen=True)
class SweepConfig:
    ctx: int
    cache_type: str
    ubatch: int
    threads: int
    parallel: int
    draft: str = ""  # "" none; an n-gram mode (ngram-simple, …); or a library model that drafts

    @property
    def key(self) -> str:
        return f"ctx={self.ctx} cache={self.cache_type} ub={self.ubatch} t={self.threads} np={self.parallel}" + (
            f" draft={self.draft}" if self.draft else ""
        )

    def overrides(self, rt: Runtime) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ctx": self.ctx,
            "cache_type_k": self.cache_type,
            "cache_type_v": self.cache_type,
            "ubatch": self.ubatch,
            "batch": max(self.ubatch, 2048),
            "threads": self.threads,
            "parallel": self.parallel,
        }
        if self.draft.startswith("ngram"):
            out["spec_type"] = self.draft
        elif self.draft:
            out |= {"spec_type": "draft-simple", "draft_model": str(rt.store.resolve(self.draft))}
        return out


def configs(
    *,
    ctx: list[int],
    cache_type: list[str],
    ubatch: list[int],
    threads: list[int],
    parallel: list[int],
    draft: list[str],
) -> list[SweepConfig]:
    """Every combination, in a stable order; at most 64 (a sweep is minutes per configuration)."""
    combos = [SweepConfig(*c) for c in itertools.product(ctx, cache_type, ubatch, threads, parallel, draft)]
    if not combos:
        raise ConfigError("a sweep needs at least one value per setting")
    if len(combos) > 64:
        raise ConfigError(f"{len(combos)} configurations: at most 64 per sweep (each is a start, a suite and a stop)")
    return combos


@dataclass
class SweepState:
    id: str
    model: str
    configs: list[SweepConfig]
    suite: str = ""  # "" = the built-in set
    tolerance_pct: float = TOLERANCE_PCT
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    status: str = "pending"  # pending | running | cancelled | done | failed
    created_at: float = field(default_factory=time.time)
    error: str = ""

    @property
    def remaining(self) -> list[SweepConfig]:
        return [c for c in self.configs if c.key not in self.results]

    def rows(self) -> list[dict[str, Any]]:
        rows = [self.results[c.key] for c in self.configs if c.key in self.results]
        return mark_pareto(rows)

    def recommended(self) -> dict[str, Any] | None:
        return recommend(self.rows(), self.tolerance_pct)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["configs"] = [asdict(c) for c in self.configs]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SweepState:
        return cls(
            id=d["id"],
            model=d["model"],
            configs=[SweepConfig(**c) for c in d["configs"]],
            suite=d.get("suite", ""),
            tolerance_pct=float(d.get("tolerance_pct", TOLERANCE_PCT)),
            results=d.get("results", {}),
            status=d.get("status", "pending"),
            created_at=float(d.get("created_at", 0.0)),
            error=d.get("error", ""),
        )


def mark_pareto(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A row is on the frontier when no other finished row is at least as fast with no more memory
    and strictly better in one of the two (generation tok/s up, peak bytes down)."""
    ok = [r for r in rows if r.get("gen_tokens_per_s") and r.get("peak_bytes")]
    out = []
    for r in rows:
        dominated = r not in ok or any(
            o is not r
            and o["gen_tokens_per_s"] >= r["gen_tokens_per_s"]
            and o["peak_bytes"] <= r["peak_bytes"]
            and (o["gen_tokens_per_s"] > r["gen_tokens_per_s"] or o["peak_bytes"] < r["peak_bytes"])
            for o in ok
        )
        out.append({**r, "pareto": not dominated})
    return out


def recommend(rows: list[dict[str, Any]], tolerance_pct: float = TOLERANCE_PCT) -> dict[str, Any] | None:
    """Among the configurations that pass as many checks as the best one (a faster setting that
    answers worse is no recommendation), the one using the least memory within ``tolerance_pct``
    of the fastest."""
    ok = [r for r in rows if r.get("gen_tokens_per_s") and r.get("peak_bytes")]
    if not ok:
        return None
    best_pass = max((r.get("pass_rate") or 0.0) for r in ok)
    good = [r for r in ok if (r.get("pass_rate") or 0.0) >= best_pass]
    fastest = max(r["gen_tokens_per_s"] for r in good)
    near = [r for r in good if r["gen_tokens_per_s"] >= fastest * (1 - tolerance_pct / 100.0)]
    pick = min(near, key=lambda r: (r["peak_bytes"], -r["gen_tokens_per_s"]))
    return next((r for r in rows if r.get("config") == pick.get("config")), pick)


class SweepStore:
    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / "sweeps"

    def path(self, sweep_id: str) -> Path:
        if not sweep_id.replace("-", "").isalnum():
            raise ConfigError(f"no sweep {sweep_id!r}")
        return self.dir / f"{sweep_id}.json"

    def save(self, s: SweepState) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path(s.id), s.to_json(), indent=1)

    def load(self, sweep_id: str) -> SweepState:
        data = read_cache(self.path(sweep_id), dict)
        if not data:
            raise ConfigError(f"no sweep {sweep_id!r} (see `sweep --list`)")
        return SweepState.from_json(data)

    def all(self) -> list[SweepState]:
        if not self.dir.is_dir():
            return []
        out = []
        for p in self.dir.glob("*.json"):
            data = read_cache(p, dict)
            if data:
                out.append(SweepState.from_json(data))
        return sorted(out, key=lambda s: s.created_at, reverse=True)

    def unfinished(self) -> list[SweepState]:
        return [s for s in self.all() if s.status in ("pending", "running") and s.remaining]


def new_sweep(
    rt: Runtime, model: str, cfgs: list[SweepConfig], *, suite: str = "", tolerance_pct: float = TOLERANCE_PCT
) -> SweepState:
    rt.store.resolve(model)  # a clear error for a model not in the library
    if suite and rt.history.suite(suite) is None:
        raise ConfigError(f"no suite named {suite!r}; save one on the Suites page or with `suite save`")
    for c in cfgs:
        if c.draft and not c.draft.startswith("ngram"):
            rt.draft_check(model, c.draft)
    s = SweepState(
        time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:4], model, cfgs, suite=suite, tolerance_pct=tolerance_pct
    )
    rt.sweeps.save(s)
    return s


def run_sweep(
    rt: Runtime,
    s: SweepState,
    *,
    progress: Callable[[float, str], None] = lambda f, d: None,
    cancel: Any = None,
    start_timeout_s: float = 180.0,
) -> SweepState:
    """Run what is left of ``s``; saved after every configuration. Refuses to stop an engine the
    sweep did not start."""
    from zoe_panel.suites import Suite

    current = rt.engine.status(max_age_s=0)
    if current.state.is_running and current.spec is not None and current.spec.alias != f"sweep-{s.id}":
        raise ConfigError(
            f"an engine is running ({current.spec.model_name}); stop it first: a sweep starts and stops its own"
        )
    if current.state.is_running:
        rt.engine.stop(client="sweep")  # a sweep's own engine, left by a panel that restarted mid-sweep
    suite: Suite = builtin_suite()
    if s.suite:
        data = rt.history.suite(s.suite)
        if data is None:
            raise ConfigError(f"suite {s.suite!r} was deleted; the sweep cannot go on")
        suite = Suite.from_json(data)
    s.status = "running"
    rt.sweeps.save(s)
    total = len(s.configs)
    try:
        for cfg in s.remaining:
            done = total - len(s.remaining)
            progress(done / total, f"{done + 1}/{total}: {cfg.key}")
            if cancel is not None and cancel.is_set():
                s.status = "cancelled"
                break
            s.results[cfg.key] = measure(rt, s, cfg, suite, start_timeout_s)
            rt.sweeps.save(s)
        else:
            s.status = "done"
    except Exception as e:
        s.status = "failed"
        s.error = str(e)[:500]
        raise
    finally:
        rt.sweeps.save(s)
    progress(1.0 if s.status == "done" else (total - len(s.remaining)) / total, s.status)
    return s


def measure(rt: Runtime, s: SweepState, cfg: SweepConfig, suite: Suite, start_timeout_s: float) -> dict[str, Any]:
    import statistics

    from zoe_panel.memory import measured_bytes
    from zoe_panel.runs_report import power_of
    from zoe_panel.suites import run_suite

    row: dict[str, Any] = {**asdict(cfg), "config": cfg.key}
    try:
        spec = rt.default_spec(s.model, alias=f"sweep-{s.id}", **cfg.overrides(rt))
        rt.engine.start(spec, client="sweep")
        status = rt.engine.wait(start_timeout_s, on_poll=rt.recording())
    except ZoePanelError as e:
        return row | {"outcome": "refused", "error": str(e)[:300]}
    run_id = status.run_id
    row["run_id"] = run_id
    try:
        if status.state.value != "READY":
            d = rt.engine.diagnose(status)
            return row | {"outcome": "failed", "error": (d.title if d else status.reason)[:300]}
        answers = run_suite(rt, suite)
    finally:
        rt.engine.stop(client="sweep")
    rt.recorder.flush()
    run = rt.history.run(run_id) if run_id else None

    def med(key: str) -> float | None:
        vals = [a[key] for a in answers if a.get(key) is not None]
        return round(statistics.median(vals), 3) if vals else None

    judged = [a["passed"] for a in answers if a.get("passed") is not None]
    peak = (measured_bytes(run) or run.peak_engine_rss_bytes) if run is not None else None
    acc = [a["acceptance"] for a in answers if a.get("acceptance") is not None]
    return row | {
        "outcome": "ok",
        "ttft_ms": med("ttft_ms"),
        "prompt_tokens_per_s": med("prompt_tokens_per_s"),
        "gen_tokens_per_s": med("gen_tokens_per_s"),
        "peak_bytes": peak,
        "pass_rate": round(sum(judged) / len(judged), 3) if judged else None,
        "acceptance": round(statistics.median(acc), 3) if acc else None,
        **power_of(answers),
    }


def apply(rt: Runtime, s: SweepState, row: dict[str, Any]) -> None:
    """Save a configuration as the model's preset (the Engine page then starts from it)."""
    from zoe_panel.models.presets import Preset

    cfg = SweepConfig(**{k: row[k] for k in ("ctx", "cache_type", "ubatch", "threads", "parallel", "draft")})
    o = cfg.overrides(rt)
    current = rt.preset_for(s.model)
    rt.presets.save(
        s.model,
        Preset(
            ctx=cfg.ctx,
            n_gpu_layers=current.n_gpu_layers,
            cache_type_k=cfg.cache_type,
            cache_type_v=cfg.cache_type,
            flash_attn=current.flash_attn,
            parallel=cfg.parallel,
            threads=cfg.threads,
            ubatch=cfg.ubatch,
            spec_type=o.get("spec_type", ""),
            draft_model=o.get("draft_model", ""),
            extra_args=current.extra_args,
        ),
    )
