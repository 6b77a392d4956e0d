"""The same model on several engines, measured the same way, one after another: time to READY, peak
memory during the load, KV bytes per token, TTFT and decode speed single-stream and with N parallel
requests, the prompt set's pass rate. Every engine run and reply lands in History; the verdict says
which engine serves this model better on this machine, and why."""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from zoe_panel.chat import ChatParams
from zoe_panel.errors import ConfigError, ZoePanelError

if TYPE_CHECKING:
    from zoe_panel.runtime import Runtime

PARALLEL_PROMPT = "Write a short paragraph about the history of lighthouses."


def measure_engine(
    rt: Runtime,
    model: str,
    flavor: str,
    *,
    ctx: int,
    parallel: int,
    extra_args: tuple[str, ...] = (),
    start_timeout_s: float = 600.0,
) -> dict[str, Any]:
    from zoe_panel.engine import flavors
    from zoe_panel.memory import measured_bytes
    from zoe_panel.suites import run_suite
    from zoe_panel.sweep import builtin_suite

    row: dict[str, Any] = {"engine": flavor}
    ok, detail = flavors.get(flavor).available(rt.settings)
    if not ok:
        return row | {"outcome": "unavailable", "error": detail}
    spec = rt.default_spec(model, flavor=flavor, ctx=ctx, parallel=max(1, parallel), extra_args=extra_args)
    est = rt.memory.estimate(spec)
    t0 = time.monotonic()
    try:
        rt.engine.start(spec, client="compare")
        status = rt.engine.wait(start_timeout_s, on_poll=rt.recording())
    except ZoePanelError as e:
        return row | {"outcome": "refused", "error": str(e)[:300]}
    row["time_to_ready_s"] = round(time.monotonic() - t0, 1)
    row["run_id"] = status.run_id
    try:
        if status.state.value != "READY":
            d = rt.engine.diagnose(status)
            return row | {"outcome": "failed", "error": (d.text() if d else status.reason)[:500]}
        answers = run_suite(rt, builtin_suite())
        row["parallel_tokens_per_s"] = parallel_throughput(rt, parallel)
        events = rt.engine.load_events()
    finally:
        rt.engine.stop(client="compare")
    rt.recorder.flush()
    run = rt.history.run(status.run_id or "")
    judged = [a["passed"] for a in answers if a.get("passed") is not None]

    def med(key: str) -> float | None:
        vals = [a[key] for a in answers if a.get(key) is not None]
        return round(statistics.median(vals), 2) if vals else None

    reported_tokens = next((e.detail.get("tokens") for e in reversed(events) if e.phase == "kv_tokens"), None)
    kv_space = next((e.bytes for e in reversed(events) if e.phase == "kv_space"), None)
    kv_bytes_per_token = (
        round(kv_space / reported_tokens) if kv_space and reported_tokens else round(est.kv_bytes / max(1, est.n_ctx))
    )
    return row | {
        "outcome": "ok",
        "peak_load_bytes": run.peak_engine_rss_bytes if run else None,
        "measured_bytes": measured_bytes(run) if run else None,
        "predicted_at_ready_bytes": est.at_ready_bytes,
        "kv_bytes_per_token": kv_bytes_per_token,
        "kv_tokens_predicted": est.kv[0].cells if est.kv and flavors.get(flavor).memory_model == "vllm" else None,
        "kv_tokens_reported": reported_tokens,
        "ttft_ms": med("ttft_ms"),
        "gen_tokens_per_s": med("gen_tokens_per_s"),
        "pass_rate": round(sum(judged) / len(judged), 3) if judged else None,
        "parallel": parallel,
    }


def parallel_throughput(rt: Runtime, n: int, max_tokens: int = 64) -> float | None:
    """Total generated tokens per second with ``n`` requests at once."""
    if n <= 1:
        return None
    client = rt.chat_client()
    params = ChatParams(max_tokens=max_tokens, temperature=0.0, seed=7)

    def one(i: int) -> int:
        _, stats = client.complete([{"role": "user", "content": f"{PARALLEL_PROMPT} ({i})"}], params)
        return stats.completion_tokens

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=n) as pool:
        tokens = sum(pool.map(one, range(n)))
    return round(tokens / (time.monotonic() - t0), 1)


def verdict(rows: list[dict[str, Any]]) -> str:
    ok = [r for r in rows if r.get("outcome") == "ok"]
    if not ok:
        return "no engine served the model: " + "; ".join(f"{r['engine']}: {r.get('error', '?')}" for r in rows)
    if len(ok) == 1:
        others = "; ".join(f"{r['engine']} {r['outcome']}: {r.get('error', '')}" for r in rows if r is not ok[0])
        return f"only {ok[0]['engine']} served the model here ({others})"
    fast = max(ok, key=lambda r: r.get("gen_tokens_per_s") or 0)
    small = min(ok, key=lambda r: r.get("measured_bytes") or r.get("peak_load_bytes") or 1 << 62)
    ready = min(ok, key=lambda r: r.get("time_to_ready_s") or 1e9)
    par = [r for r in ok if r.get("parallel_tokens_per_s")]
    lines = [
        f"single stream: {fast['engine']} is fastest ({fast['gen_tokens_per_s']} tok/s)",
        f"memory: {small['engine']} needs least ({(small.get('measured_bytes') or 0) / 2**30:.2f} GiB)",
        f"start: {ready['engine']} is READY first ({ready['time_to_ready_s']} s)",
    ]
    if par:
        best = max(par, key=lambda r: r["parallel_tokens_per_s"])
        lines.append(
            f"{best['parallel']} requests at once: {best['engine']} ({best['parallel_tokens_per_s']} tok/s in all)"
        )
    # the smaller engine wins unless it is more than 20 % slower per stream
    near = (small.get("gen_tokens_per_s") or 0) >= 0.8 * fast["gen_tokens_per_s"]
    pick = small if near else fast
    lines.append(f"verdict: {pick['engine']} for this model on this machine")
    return "; ".join(lines)


def compare(
    rt: Runtime,
    model: str,
    engines: list[str],
    *,
    ctx: int = 2048,
    parallel: int = 4,
    extra: dict[str, tuple[str, ...]] | None = None,
) -> dict[str, Any]:
    """``extra``: an engine's own extra flags (checked against its allow-list now), e.g. vLLM's
    ``--dtype float32`` where AMX traps; each engine otherwise runs with the panel's defaults."""
    from zoe_panel.engine import flavors

    unknown = [e for e in engines if e not in flavors.names()]
    if unknown:
        raise ConfigError(f"unknown engine(s) {', '.join(unknown)}; choose from {', '.join(flavors.names())}")
    extra = {e: flavors.get(e).check_extra(a) for e, a in (extra or {}).items() if a}
    stray = [e for e in extra if e not in engines]
    if stray:
        raise ConfigError(f"extra flags for {', '.join(stray)}, which is not compared here")
    current = rt.engine.status(max_age_s=0)
    if current.state.is_running:
        raise ConfigError("an engine is running: stop it first (a comparison starts and stops each engine)")
    rows = [measure_engine(rt, model, e, ctx=ctx, parallel=parallel, extra_args=extra.get(e, ())) for e in engines]
    out = {"model": model, "ctx": ctx, "rows": rows, "verdict": verdict(rows), "at": time.time()}
    if extra:
        out["extra"] = {e: list(a) for e, a in extra.items()}
    rt.history.add_comparison(model, out)
    return out
