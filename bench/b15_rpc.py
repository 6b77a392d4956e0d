"""Benchmark 15: a model split over llama.cpp RPC workers on loopback against the same model in one
process (the baseline): decode tok/s, prompt tok/s, and the bytes that cross the link per generated
token (read and written by the workers' sockets, from /proc/PID/io). On one 2-core machine the
workers share the cores with the engine, so this measures the protocol's cost, not a second board's
compute: the paper estimate for two Orin NX boards is in BENCHMARKS.md."""

from __future__ import annotations

import re
import subprocess

from common import Table, median, scratch_runtime

from zoe_panel.chat import ChatParams
from zoe_panel.engine.base import EngineState
from zoe_panel.models.demo import GEMMA3_270M, SMOLLM2

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


def link_bytes(ports: list[int]) -> int:
    """Bytes the workers' server sockets sent and received so far (ss -ti: the kernel's per-socket
    counters; socket I/O is not in /proc/PID/io)."""
    total = 0
    for port in ports:
        out = subprocess.run(
            ["ss", "-tinH", "state", "established", f"( sport = :{port} )"], capture_output=True, text=True, check=True
        ).stdout
        total += sum(int(n) for n in re.findall(r"bytes_(?:sent|received):(\d+)", out))
    return total


def run(rt, spec, n: int, tokens: int, ports: list[int]) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    rt.engine.start(spec)
    st = rt.engine.wait(120)
    assert st.state == EngineState.READY, st.reason
    gen, prompt, per_token = [], [], []
    try:
        for i in range(n):
            before = link_bytes(ports)
            _, stats = rt.chat_client().complete(
                [{"role": "user", "content": f"{PROMPT} ({i})"}],
                ChatParams(max_tokens=tokens, temperature=0.0, seed=i),
            )
            moved = link_bytes(ports) - before
            gen.append(stats.gen_tokens_per_s or 0.0)
            prompt.append(stats.prompt_tokens_per_s or 0.0)
            done = (stats.completion_tokens or 0) + (stats.prompt_tokens or 0)
            per_token.append(moved / max(1, done))
    finally:
        rt.engine.stop()
    return median(gen), median(prompt), median(per_token)


def main(smoke: bool = False) -> Table:
    t = Table(
        "15. Split over 2 RPC workers on loopback vs one process",
        ["model", "layout", "decode tok/s", "prompt tok/s", "link bytes/token", "ratio decode vs one process"],
    )
    n, tokens = (1, 16) if smoke else (3, 128)
    rt = scratch_runtime()
    try:
        workers = [rt.workers.start(port=p, threads=1) for p in (_free(), _free())]
        rpc = tuple(w.endpoint for w in workers)
        ports = [w.port for w in workers]
        for model in (SMOLLM2.filename,) if smoke else (SMOLLM2.filename, GEMMA3_270M.filename):
            single = rt.default_spec(model, ctx=2048, parallel=1)
            g0, p0, _ = run(rt, single, n, tokens, [])
            t.add(model, "one process (baseline)", round(g0, 1), round(p0, 1), 0, 1.0)
            spec, plan = rt.rpc_spec(model, rpc, shares=(1.0, 1.0, 0.0), ctx=2048, parallel=1)
            g1, p1, b1 = run(rt, spec, n, tokens, ports)
            layers = "/".join(str(len(p.layers)) for p in plan.workers)
            t.add(model, f"2 workers ({layers} layers)", round(g1, 1), round(p1, 1), round(b1), round(g1 / g0, 3))
        t.notes.append(
            "Workers run one thread each beside the engine on the same 2 cores; link bytes are what the "
            "workers' sockets sent and received during each request, per prompt and generated token (the "
            "activations of every hop plus the protocol's commands and graph descriptions)."
        )
    finally:
        rt.workers.stop(all_workers=True, timeout_s=2)
        rt.close()
    return t


def _free() -> int:
    from common import free_port

    return free_port()


if __name__ == "__main__":
    print(main().markdown())
