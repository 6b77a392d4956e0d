"""Benchmark 9 (prompt suites): the same suite on two engine configs, compared with numbers
(what the Suites page's comparison view shows)."""

from __future__ import annotations

from common import SMOL, Table, scratch_runtime

from zoe_panel.suites import Suite, SuitePrompt, compare, run_suite

SUITE = Suite(
    "bench-suite",
    (
        SuitePrompt("What is the capital of France? Answer in one word.", ("paris",)),
        SuitePrompt("Write two sentences about the sea."),
        SuitePrompt("List the days of the week.", ("monday", "friday")),
        SuitePrompt("Summarize: the quick brown fox jumps over the lazy dog."),
    ),
    max_tokens=64,
)


def main(smoke: bool = False) -> Table:
    rt = scratch_runtime(sampler=True)
    configs = [
        dict(ctx=2048, cache_type_k="f16", cache_type_v="f16"),
        dict(ctx=8192, cache_type_k="q8_0", cache_type_v="q8_0"),
    ]
    for cfg in configs[: 1 if smoke else 2]:
        rt.engine.start(rt.default_spec(SMOL, parallel=1, **cfg))
        rt.engine.wait(60, on_poll=rt.recording())
        for _ in range(1 if smoke else 3):
            run_suite(rt, SUITE)
        rt.engine.stop()
    rows = compare(rt, SUITE.name)
    rt.close()
    t = Table(
        "9. One prompt suite on two configs (SmolLM2; 4 prompts × 3 replays; medians)",
        ["config", "TTFT ms", "prompt tok/s", "gen tok/s", "pass rate", "peak RAM used (MiB)", "ratio gen tok/s"],
    )
    base = rows[0]["gen_tok_s"] if rows else None
    for r in rows:
        t.add(
            f"ctx {r['ctx']}, {r['cache']} cache",
            r["ttft_ms"],
            r["prompt_tok_s"],
            r["gen_tok_s"],
            r["pass_rate"],
            r["peak_ram_used_mib"],
            (r["gen_tok_s"] / base) if base and r["gen_tok_s"] else None,
        )
    t.notes.append("Baseline: the first config. Pass rate counts the prompts that have expectations.")
    return t


if __name__ == "__main__":
    print(main().markdown())
