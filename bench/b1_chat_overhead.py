"""Benchmark 1: the panel's chat client vs raw httpx, straight to the same engine, interleaved.

Both keep one HTTP connection alive and stream the same prompt with the same seed; TTFT is the
client's clock from sending the request to the first content delta, tokens/s the engine's own
timing of each request (the same for both paths unless the client slows the engine down).
"""

from __future__ import annotations

import json
import time

import httpx
from common import SMOL, Table, median, p90, scratch_runtime

from zoe_panel.chat import ChatClient, ChatParams

PROMPT = "List five facts about the Moon, one per line."


def raw_once(client: httpx.Client, max_tokens: int, seed: int) -> tuple[float, float]:
    body = {
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "stream": True,
        "temperature": 0.7,
        "seed": seed,
        "stream_options": {"include_usage": True},
    }
    t0 = time.perf_counter()
    ttft = None
    rate = float("nan")
    req = client.build_request("POST", "/v1/chat/completions", json=body)
    try:  # the same single resend on a kept-alive connection the server had closed
        r = client.send(req, stream=True)
    except httpx.RemoteProtocolError:
        r = client.send(req, stream=True)
    try:
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            obj = json.loads(line[6:])
            if ttft is None and any((c.get("delta") or {}).get("content") for c in obj.get("choices") or []):
                ttft = time.perf_counter() - t0
            if obj.get("timings"):
                rate = obj["timings"]["predicted_per_second"]
    finally:
        r.close()
    return (ttft or float("nan")) * 1000, rate


def panel_once(client: ChatClient, max_tokens: int, seed: int) -> tuple[float, float]:
    _, stats = client.complete(
        [{"role": "user", "content": PROMPT}], ChatParams(max_tokens=max_tokens, temperature=0.7, seed=seed)
    )
    return stats.ttft_ms or float("nan"), stats.gen_tokens_per_s or float("nan")


def main(smoke: bool = False) -> Table:
    pairs = 2 if smoke else 40
    max_tokens = 16 if smoke else 64
    rt = scratch_runtime()
    rt.start_engine(rt.default_spec(SMOL, ctx=2048, parallel=1))
    st = rt.wait_ready(60)
    panel = rt.chat_client()
    raw = httpx.Client(base_url=st.base_url or "", timeout=120)
    try:
        panel_once(panel, 8, 0)  # warm both connections and the engine's caches
        raw_once(raw, 8, 0)
        p_ttft, r_ttft, p_rate, r_rate, diffs = [], [], [], [], []
        for i in range(pairs):
            order = ("p", "r") if i % 2 == 0 else ("r", "p")  # alternate who goes first
            got = {}
            for who in order:
                got[who] = panel_once(panel, max_tokens, i + 1) if who == "p" else raw_once(raw, max_tokens, i + 1)
            p_ttft.append(got["p"][0])
            r_ttft.append(got["r"][0])
            p_rate.append(got["p"][1])
            r_rate.append(got["r"][1])
            diffs.append(got["p"][0] - got["r"][0])
    finally:
        raw.close()
        rt.controller.stop()
        rt.close()
    t = Table(
        f"1. Chat path overhead: panel client vs raw httpx ({pairs} interleaved pairs, SmolLM2, {max_tokens} tokens)",
        ["measure", "panel client", "raw httpx (baseline)", "difference / ratio", "target", "met"],
    )
    d_med, d_p90 = median(diffs), p90(diffs)
    ratio = median(p_rate) / median(r_rate)
    t.add("TTFT median (ms)", median(p_ttft), median(r_ttft), d_med, "≤ 1 ms overhead", d_med <= 1.0)
    t.add(
        "TTFT p90 (ms), and p90 of the per-pair difference",
        p90(p_ttft),
        p90(r_ttft),
        d_p90,
        "≤ 1 ms overhead",
        d_p90 <= 1.0,
    )
    t.add("generation tok/s median (engine timings)", median(p_rate), median(r_rate), ratio, "≥ 0.99", ratio >= 0.99)
    return t


if __name__ == "__main__":
    print(main().markdown())
