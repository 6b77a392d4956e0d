"""Benchmark 2: the engine the panel starts by default vs a hand-tuned native llama-server on the
same model, and llama-cpp-python's server for reference. Engines run one at a time (2 cores), in
alternating blocks, with the same prompt (~230 tokens, no prompt cache) and 128 generated tokens.
"""

from __future__ import annotations

import subprocess
import time

import httpx
from common import SMOL, Table, free_port, median, scratch_runtime

from zoe_panel.chat import ChatClient, ChatParams
from zoe_panel.engine.binary import find_llama_server

PROMPT = (
    "Here is a list of words: " + ", ".join(f"item{i}" for i in range(90)) + ". Summarize the list in one sentence."
)


def measure(base: str, n: int, max_tokens: int, *, engine_timings: bool = True) -> tuple[list[float], list[float]]:
    client = ChatClient(base)
    gen, pp = [], []
    try:
        for i in range(n):
            body = [{"role": "user", "content": PROMPT + f" (run {time.time_ns()})"}]  # defeats the prompt cache
            _, st = client.complete(body, ChatParams(max_tokens=max_tokens, temperature=0.7, seed=i))
            gen.append(st.gen_tokens_per_s or float("nan"))
            pp.append(st.prompt_tokens_per_s or float("nan"))
    finally:
        client.close()
    return gen, pp


def hand_tuned(binary: str, model: str, port: int) -> subprocess.Popen[bytes]:
    # what an operator would tune by hand on this box: one slot, all cores, flash attention on,
    # a batch as big as the prompt, weights locked in RAM, no warm-up noise in the log
    cmd = [
        binary,
        "-m",
        model,
        "-c",
        "2048",
        "-np",
        "1",
        "-t",
        "2",
        "-tb",
        "2",
        "-fa",
        "on",
        "-b",
        "512",
        "-ub",
        "512",
        "-lm",
        "mmap+mlock",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError("hand-tuned llama-server did not come up")


def main(smoke: bool = False) -> Table:
    blocks, per_block, max_tokens = (1, 2, 32) if smoke else (6, 5, 128)
    rt = scratch_runtime()
    binary = find_llama_server(rt.settings)
    model = str(rt.store.root / SMOL)
    res: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in ("panel", "tuned", "python")}
    for _ in range(blocks):
        rt.start_engine(rt.default_spec(SMOL, ctx=2048))  # the panel's defaults: 4 slots, unified KV, -fa auto
        st = rt.wait_ready(60)
        g, p = measure(st.base_url or "", per_block, max_tokens)
        res["panel"][0].extend(g)
        res["panel"][1].extend(p)
        rt.controller.stop()
        port = free_port()
        proc = hand_tuned(binary, model, port)
        try:
            g, p = measure(f"http://127.0.0.1:{port}", per_block, max_tokens)
            res["tuned"][0].extend(g)
            res["tuned"][1].extend(p)
        finally:
            proc.terminate()
            proc.wait(30)
    rt.start_engine(rt.default_spec(SMOL, ctx=2048, flavor="llama-cpp-python", parallel=1))
    st = rt.wait_ready(120)
    g, p = measure(st.base_url or "", per_block, max_tokens)
    res["python"][0].extend(g)
    res["python"][1].extend(p)
    rt.controller.stop()
    rt.close()
    tg = {k: median(v[0]) for k, v in res.items()}
    pp = {k: median(v[1]) for k, v in res.items()}
    t = Table(
        f"2. Default engine vs hand-tuned llama-server (SmolLM2 Q4_1, {blocks} alternating blocks × "
        f"{per_block} requests, {max_tokens} tokens)",
        ["engine", "generation tok/s", "prompt tok/s", "gen ratio vs hand-tuned", "prompt ratio", "target", "met"],
    )
    for key, label in (
        ("tuned", "hand-tuned llama-server (baseline)"),
        ("panel", "panel default (llama-server)"),
        ("python", "llama-cpp-python server (reference)"),
    ):
        gr, pr = tg[key] / tg["tuned"], pp[key] / pp["tuned"]
        target = "≥ 0.98" if key == "panel" else ""
        t.add(
            label,
            tg[key],
            pp[key] if key != "python" else None,
            gr,
            pr if key != "python" else None,
            target,
            (gr >= 0.98 and pr >= 0.98) if key == "panel" else None,
        )
    t.notes.append(
        "llama-cpp-python's server sends no timings: its generation rate is the client's measure and "
        "its prompt rate is unknown."
    )
    return t


if __name__ == "__main__":
    print(main().markdown())
