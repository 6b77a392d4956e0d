"""Benchmark 16: the Lab. A 2×2 tuning sweep of SmolLM2 (context × KV cache type) with its
frontier and recommendation, and speculative decoding against the same configuration without a
draft (the baseline): an n-gram mode and SmolLM2 drafting for itself, on the built-in prompts plus a
repetitive one (where drafting pays)."""

from __future__ import annotations

import os

from common import Table, scratch_runtime

from zoe_panel.models.demo import SMOLLM2
from zoe_panel.suites import Suite, SuitePrompt
from zoe_panel.sweep import BUILTIN, configs, new_sweep, run_sweep

MIB = 1024 * 1024
REPEAT = "Copy this list exactly, twice: alpha, beta, gamma, delta, epsilon, zeta, eta, theta, iota, kappa."


def main(smoke: bool = False) -> Table:
    t = Table(
        "16. Lab: a 2×2 sweep, and speculative decoding vs none (SmolLM2, median of the prompts)",
        ["sweep", "configuration", "gen tok/s", "peak MiB", "pass", "draft accepted", "frontier", "ratio vs baseline"],
    )
    rt = scratch_runtime(sampler=True)
    try:
        os.link(rt.store.resolve(SMOLLM2.filename), rt.store.root / "SmolLM2-draft.gguf")
        sweeps = [
            (
                "ctx × cache",
                configs(
                    ctx=[1024] if smoke else [1024, 2048],
                    cache_type=["f16"] if smoke else ["f16", "q8_0"],
                    ubatch=[512],
                    threads=[0],
                    parallel=[1],
                    draft=[""],
                ),
                "",
            ),
            (
                "speculative",
                configs(
                    ctx=[2048],
                    cache_type=["f16"],
                    ubatch=[512],
                    threads=[0],
                    parallel=[1],
                    draft=["", "ngram-mod"] if smoke else ["", "ngram-mod", "SmolLM2-draft.gguf"],
                ),
                "bench-spec",
            ),
        ]
        prompts = tuple(SuitePrompt(p, e) for p, e in BUILTIN) + (SuitePrompt(REPEAT, ("kappa",)),)
        rt.history.save_suite("bench-spec", Suite("bench-spec", prompts, max_tokens=96).to_json())
        for label, cfgs, suite in sweeps:
            s = run_sweep(rt, new_sweep(rt, SMOLLM2.filename, cfgs, suite=suite))
            rows = s.rows()
            rec = s.recommended()
            base = rows[0].get("gen_tokens_per_s") or 1.0
            for r in rows:
                t.add(
                    label,
                    r["config"] + (" (recommended)" if rec and r["config"] == rec["config"] else ""),
                    r.get("gen_tokens_per_s"),
                    round(r["peak_bytes"] / MIB, 1) if r.get("peak_bytes") else None,
                    r.get("pass_rate"),
                    r.get("acceptance"),
                    "yes" if r.get("pareto") else "",
                    round((r.get("gen_tokens_per_s") or 0) / base, 3),
                )
        t.notes.append(
            "Baseline per sweep: its first configuration (ctx 1024 f16; no draft). Peak = the engine's measured "
            "memory at READY and while serving. No power source on this machine (no RAPL, no GPU): tok/J is empty."
        )
    finally:
        rt.close()
    return t


if __name__ == "__main__":
    print(main().markdown())
