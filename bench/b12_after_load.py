"""Benchmark 12: memory after READY. The engine serves distinct prompts on 4 slots; its RSS above
the READY level is compared with what the estimate allows after READY (prompt cache cap, context
checkpoints, the CPU compute pages, the slots' sampling buffers). Panel: the caps the panel passes
(--cache-ram sized from free memory, or a small one here to show it holds; --ctx-checkpoints 8).
Baseline, measured in the same run: the same workload with upstream's defaults (8192 MiB of cache,
32 checkpoints per slot)."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
from common import GEMMA, MIB, SMOL, Table, scratch_runtime

from zoe_panel.engine.base import EngineSpec
from zoe_panel.runtime import Runtime
from zoe_panel.telemetry.sampler import tree_rss

TEXT = "memory board engine cache token slot prompt window river mountain harbour signal lantern garden copper"
WORDS = TEXT.split(" ")


def prompts(n: int, seed: int) -> list[str]:
    """Distinct prompts of 150-400 words: nothing shared beyond the chat template."""
    rnd = random.Random(seed)
    return [
        f"Note {i}: " + " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(150, 400))) + "\nSummarise in one line."
        for i in range(n)
    ]


def serve(rt: Runtime, spec: EngineSpec, n_prompts: int) -> dict[str, float]:
    """Start, send the prompts 4 at a time, stop: RSS at READY, the peak after, the caps."""
    est = rt.memory.estimate(spec)
    st = rt.engine.start(spec, client="bench")
    rt.engine.wait(120)
    proc = psutil.Process(rt.engine.engine_pid())
    time.sleep(0.5)
    ready = tree_rss(proc)
    peak = [ready]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            try:
                peak[0] = max(peak[0], tree_rss(proc))
            except psutil.Error:
                pass
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    headers = {"Authorization": f"Bearer {spec.api_key}"} if spec.api_key else {}
    url = f"{st.base_url}/v1/chat/completions"

    def ask(text: str) -> int:
        body = {"messages": [{"role": "user", "content": text}], "max_tokens": 16, "temperature": 0}
        return httpx.post(url, json=body, headers=headers, timeout=300).status_code

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        codes = list(pool.map(ask, prompts(n_prompts, seed=len(spec.model_name))))
    seconds = time.monotonic() - t0
    time.sleep(0.5)
    done.set()
    watcher.join()
    final = tree_rss(proc)
    rt.engine.stop(client="bench")
    return {
        "ready": ready,
        "peak": peak[0],
        "final": final,
        "cap": est.after_load_bytes,
        "cache": est.prompt_cache_bytes,
        "checkpoints": est.checkpoint_bytes,
        "working": est.working_set_bytes + est.serving_bytes,
        "ok": sum(c == 200 for c in codes),
        "seconds": seconds,
    }


def main(smoke: bool = False) -> Table:
    n = 4 if smoke else 50
    rt = scratch_runtime()
    t = Table(
        f"12. Memory after READY: {n} distinct prompts on 4 slots (engine RSS above its READY level)",
        [
            "model",
            "caps",
            "--cache-ram MiB",
            "--ctx-checkpoints",
            "after-READY allowance MiB",
            "RSS at READY MiB",
            "growth MiB",
            "growth / allowance %",
            "ratio growth panel / upstream",
        ],
    )
    for model in (SMOL,) if smoke else (SMOL, GEMMA):  # smoke: the code path, on the quicker model
        auto = rt.default_spec(model, ctx=4096, parallel=4)  # the panel's own sizing on this machine
        small = rt.default_spec(model, ctx=4096, parallel=4, cache_ram_mib=64)
        upstream = rt.default_spec(model, ctx=4096, parallel=4, cache_ram_mib=8192, ctx_checkpoints=32)
        runs = {}
        for label, spec in (
            ("upstream defaults (baseline)", upstream),
            ("panel, sized", auto),
            ("panel, 64 MiB", small),
        ):
            runs[label] = (spec, serve(rt, spec, n))
        base_growth = max(
            1.0, runs["upstream defaults (baseline)"][1]["peak"] - runs["upstream defaults (baseline)"][1]["ready"]
        )
        for label, (spec, r) in runs.items():
            growth = r["peak"] - r["ready"]
            t.add(
                model.removesuffix(".gguf"),
                label,
                spec.cache_ram_mib,
                spec.ctx_checkpoints,
                round(r["cap"] / MIB),
                round(r["ready"] / MIB, 1),
                round(growth / MIB, 1),
                round(100 * growth / r["cap"], 1) if r["cap"] else None,
                round(growth / base_growth, 3),
            )
            assert r["ok"] == n, f"{model} {label}: {r['ok']} of {n} prompts answered"
    rt.close()
    t.notes.append(
        "Growth = the engine's highest RSS while serving minus its RSS at READY: the prompt cache (each finished "
        "prompt's KV state is saved when its slot takes a new one), Gemma-3's context checkpoints (one or two per "
        "request, 15 MiB each), and the CPU compute buffer's pages, touched by the first long prompts. The allowance "
        "is the estimate's after-READY part for that configuration; the verdict covers READY plus it."
    )
    return t


if __name__ == "__main__":
    print(main().markdown())
