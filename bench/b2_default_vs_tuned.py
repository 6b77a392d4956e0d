"""Benchmark 2: the engine the panel starts by default vs a hand-tuned native llama-server on the
same model, and llama-cpp-python's server for reference. The llama-servers answer
requests in rotating order (all loaded, only one busy at a time) with the same prompt (~230
tokens, no prompt cache) and 128 generated tokens.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import replace

import httpx
from common import SMOL, Table, free_port, median, scratch_runtime

from zoe_panel.chat import ChatClient, ChatParams
from zoe_panel.engine.argv import llama_server_argv
from zoe_panel.engine.binary import capabilities, find_llama_server

PROMPT = (
    "Here is a list of words: " + ", ".join(f"item{i}" for i in range(90)) + ". Summarize the list in one sentence."
)


def measure(
    base: str, n: int, max_tokens: int, *, engine_timings: bool = True, key: str = ""
) -> tuple[list[float], list[float]]:
    client = ChatClient(base, api_key=key)
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
    return launch(cmd, port)


def launch(cmd: list[str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{cmd[0]} did not come up on port {port}")


def main(smoke: bool = False) -> Table:
    pairs, max_tokens = (2, 32) if smoke else (30, 128)
    per_block = 5 if not smoke else 2
    rt = scratch_runtime()
    binary = find_llama_server(rt.settings)
    model = str(rt.store.root / SMOL)
    res: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in ("panel", "flags", "tuned", "python")}
    # The engines stay loaded (an idle llama-server uses no CPU) and requests rotate among them one
    # by one, so a slow minute on this shared host hits every engine of a round alike. "flags" is
    # the panel's exact command launched by hand: it separates the panel's choice of flags from
    # what its supervision (a Python process reading the log) costs.
    spec = rt.default_spec(SMOL, ctx=2048)  # the panel's defaults: 4 slots, unified KV, -fa auto
    rt.engine.start(spec)
    st = rt.engine.wait(60, on_poll=rt.recording())
    port, flags_port = free_port(), free_port()
    caps = capabilities(binary, rt.settings.state_dir / "binaries.json")
    flags_cmd = llama_server_argv(binary, replace(spec, port=flags_port), caps)
    procs = [hand_tuned(binary, model, port), launch(flags_cmd, flags_port)]
    api_key = st.spec.api_key if st.spec else ""  # the panel's engines always have a key
    engines = [
        ("panel", st.base_url or ""),
        ("flags", f"http://127.0.0.1:{flags_port}"),
        ("tuned", f"http://127.0.0.1:{port}"),
    ]
    gen_ratios: list[float] = []
    try:
        for i in range(pairs):
            got = {}
            for key, base in engines[i % 3 :] + engines[: i % 3]:
                g, pp_ = measure(base, 1, max_tokens, key=api_key if key == "panel" else "")
                res[key][0].extend(g)
                res[key][1].extend(pp_)
                got[key] = g[0]
            gen_ratios.append(got["panel"] / got["tuned"])
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)
        rt.engine.stop()
    rt.engine.start(rt.default_spec(SMOL, ctx=2048, flavor="llama-cpp-python", parallel=1))
    st = rt.engine.wait(120, on_poll=rt.recording())
    g, p = measure(st.base_url or "", per_block, max_tokens, key=st.spec.api_key if st.spec else "")
    res["python"][0].extend(g)
    res["python"][1].extend(p)
    rt.engine.stop()
    rt.close()
    tg = {k: median(v[0]) for k, v in res.items()}
    pp = {k: median(v[1]) for k, v in res.items()}
    t = Table(
        f"2. Default engine vs hand-tuned llama-server (SmolLM2 Q4_1, {pairs} rounds "
        f"of one request per engine, rotating, "
        f"{max_tokens} tokens)",
        ["engine", "generation tok/s", "prompt tok/s", "gen ratio vs hand-tuned", "prompt ratio", "target", "met"],
    )
    for key, label in (
        ("tuned", "hand-tuned llama-server (baseline)"),
        ("panel", "panel default (llama-server)"),
        ("flags", "the panel's command launched by hand (reference)"),
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
        f"Median of the per-round panel/hand-tuned generation ratios: {median(gen_ratios):.3f}. "
        "llama-cpp-python's server sends no timings: its generation rate is the client's measure and "
        "its prompt rate is unknown. Run to run on this shared 2-core host these ratios move by a few "
        "per cent either way."
    )
    return t


if __name__ == "__main__":
    print(main().markdown())
