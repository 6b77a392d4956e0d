"""Prompt suites: a named list of test prompts replayed against the running engine with fixed
parameters and seed; every answer's speed, tokens, expectation pass/fail and peak memory go to
History, tied to the engine run and its config, so configs can be compared with numbers."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from zoe_panel.chat import ChatParams
from zoe_panel.errors import ConfigError
from zoe_panel.runtime import Runtime
from zoe_panel.telemetry.power import power_stats

SEP = "|||"


@dataclass(frozen=True)
class SuitePrompt:
    text: str
    expect: tuple[str, ...] = ()

    def passed(self, answer: str) -> bool | None:
        if not self.expect:
            return None
        low = answer.lower()
        return all(e.lower() in low for e in self.expect)


@dataclass(frozen=True)
class Suite:
    name: str
    prompts: tuple[SuitePrompt, ...]
    max_tokens: int = 128
    temperature: float = 0.0
    seed: int = 42
    system: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name.strip() or len(self.name) > 80:
            raise ConfigError("a suite needs a name (at most 80 characters)")
        if not self.prompts:
            raise ConfigError(f"suite {self.name!r} has no prompts")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["prompts"] = [{"text": p.text, "expect": list(p.expect)} for p in self.prompts]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Suite:
        prompts = tuple(SuitePrompt(p["text"], tuple(p.get("expect", ()))) for p in data.get("prompts", []))
        known = {k: v for k, v in data.items() if k in ("max_tokens", "temperature", "seed", "system")}
        return cls(data["name"], prompts, **known)

    def to_text(self) -> str:
        return "\n".join(p.text + (f" {SEP} " + " ;; ".join(p.expect) if p.expect else "") for p in self.prompts)


def parse_prompts(text: str) -> tuple[SuitePrompt, ...]:
    """One prompt a line; after '|||' the substrings the answer must contain, separated by ';;'."""
    out = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        prompt, _, expect = line.partition(SEP)
        out.append(SuitePrompt(prompt.strip(), tuple(e.strip() for e in expect.split(";;") if e.strip())))
    return tuple(out)


def run_suite(
    rt: Runtime, suite: Suite, progress: Callable[[int, int], None] = lambda i, n: None
) -> list[dict[str, Any]]:
    client = rt.chat_client()
    status = rt.engine.status()
    params = ChatParams(temperature=suite.temperature, max_tokens=suite.max_tokens, seed=suite.seed)
    rows = []
    for i, p in enumerate(suite.prompts):
        progress(i, len(suite.prompts))
        messages = ([{"role": "system", "content": suite.system}] if suite.system else []) + [
            {"role": "user", "content": p.text}
        ]
        t0 = time.time()
        window = rt.energy_window()
        text, stats = client.complete(messages, params)
        data = stats.to_json() | power_stats(window.stop(), stats.completion_tokens)
        samples = rt.ring.snapshot(since=t0)
        peak = max((s.ram_used_bytes for s in samples), default=None)
        passed = p.passed(text)
        rt.history.add_chat_stats(
            status.run_id, data, suite=suite.name, prompt=p.text, passed=passed, peak_ram_used_bytes=peak
        )
        rows.append({"prompt": p.text, "answer": text, "passed": passed, "peak_ram_used_bytes": peak, **data})
    progress(len(suite.prompts), len(suite.prompts))
    return rows


def compare(rt: Runtime, name: str) -> list[dict[str, Any]]:
    """One row per engine run that ran the suite: its config and the medians of its answers."""
    by_run: dict[str | None, list[dict[str, Any]]] = {}
    for row in rt.history.chat_stats(suite=name):
        by_run.setdefault(row["run_id"], []).append(row)
    out = []
    for run_id, rows in by_run.items():
        run = rt.history.run(run_id) if run_id else None
        spec = run.spec if run else {}

        def med(key: str, rows: list[dict[str, Any]] = rows) -> float | None:
            vals = [r[key] for r in rows if r.get(key) is not None]
            return round(statistics.median(vals), 2) if vals else None

        judged = [r["passed"] for r in rows if r["passed"] is not None]
        out.append(
            {
                "run_id": run_id,
                "model": run.model if run else None,
                "ctx": spec.get("ctx"),
                "cache": spec.get("cache_type_k"),
                "gpu_layers": spec.get("n_gpu_layers"),
                "flavor": spec.get("flavor"),
                "prompts": len(rows),
                "ttft_ms": med("ttft_ms"),
                "prompt_tok_s": med("prompt_tokens_per_s"),
                "gen_tok_s": med("gen_tokens_per_s"),
                "pass_rate": round(sum(judged) / len(judged), 3) if judged else None,
                "peak_ram_used_mib": round(max((r["peak_ram_used_bytes"] or 0) for r in rows) / 2**20, 1),
                "mean_power_w": med("mean_power_w"),
                "tokens_per_j": med("tokens_per_j"),
                "power_mode": (run.power_mode if run else None) or "",
                "when": min(r["t"] for r in rows),
            }
        )
    return sorted(out, key=lambda r: r["when"])
