"""Benchmark 17: the panel's own cost while a reply streams into the Chat page of a real browser
(Chromium under Playwright, on the same 2 cores), with the real engine. Baseline: the same engine
answered by a plain client in the same run. Rows: the Chat redrawing on every token (the panel
before the bounded redraw rate, chat_ui_hz = 0) and at 15 redraws a second (the default). For each,
the panel process's CPU (% of one core over the reply), Chromium's, and the engine's own decode
speed (its timings), against the plain client's."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
from common import Table, chromium, chromium_cpu, median, scratch_runtime, serve_panel, stop_panel, tree_cpu

from zoe_panel.chat import ChatParams
from zoe_panel.models.demo import SMOLLM2

PROMPT = "Write a long story about a lighthouse keeper and a storm, with many details."


def one_reply(page, rt, n: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Send a prompt, wait for the stats line; (wall seconds, engine decode tok/s)."""
    before = len(rt.history.chat_stats())
    box = page.locator(".st-key-chat-input textarea")
    box.fill(f"{PROMPT} ({n})")
    t0 = time.monotonic()
    box.press("Enter")
    deadline = time.monotonic() + 180
    while len(rt.history.chat_stats()) == before:
        if time.monotonic() > deadline:
            raise RuntimeError("no reply recorded")
        time.sleep(0.05)
    wall = time.monotonic() - t0
    row = rt.history.chat_stats()[-1]
    return wall, float(row["gen_tokens_per_s"] or 0.0)


def main(smoke: bool = False) -> Table:
    from playwright.sync_api import sync_playwright

    t = Table(
        "17. Panel cost while a reply streams into the Chat page (SmolLM2, 256 tokens, real Chromium)",
        ["how", "panel CPU % of a core", "Chromium CPU % of a core", "engine decode tok/s", "ratio vs plain client"],
    )
    n = 1 if smoke else 3
    tokens = 256  # the Chat page's default max tokens
    rt = scratch_runtime()
    try:
        rt.engine.start(rt.default_spec(SMOLLM2.filename, ctx=4096, parallel=1))
        rt.engine.wait(120)
        params = ChatParams(max_tokens=tokens, temperature=0.7, seed=1)
        direct = []
        for i in range(n):
            _, stats = rt.chat_client().complete([{"role": "user", "content": f"{PROMPT} ({i})"}], params)
            direct.append(stats.gen_tokens_per_s or 0.0)
        base = median(direct)
        t.add("plain client (baseline)", None, None, round(base, 1), 1.0)
        home = Path(rt.settings.home)
        with sync_playwright() as pw:
            browser = chromium(pw)
            try:
                shown = (("Chat, a redraw per token (before)", 0.0), ("Chat, 15 redraws/s (now)", 15.0))
                for label, hz in shown[1:] if smoke else shown:  # smoke: one panel start, not two
                    proc, url = serve_panel(home, rt.settings.engine_port, ZOE_CHAT_UI_HZ=str(hz))
                    try:
                        page = browser.new_page()
                        page.set_default_timeout(120_000)
                        page.goto(url + "/chat")
                        page.locator(".st-key-chat-input textarea").wait_for()
                        one_reply(page, rt, 99)  # warm: imports, first render
                        panel = psutil.Process(proc.pid)
                        cpu, chrome, rates, walls = [], [], [], []
                        for i in range(n):
                            c0, b0 = tree_cpu(panel), chromium_cpu()
                            wall, rate = one_reply(page, rt, i)
                            cpu.append(100 * (tree_cpu(panel) - c0) / wall)
                            chrome.append(100 * (chromium_cpu() - b0) / wall)
                            rates.append(rate)
                            walls.append(wall)
                        page.close()
                        t.add(label, round(median(cpu), 1), round(median(chrome), 1), round(median(rates), 1),
                              round(median(rates) / base, 3))  # fmt: skip
                    finally:
                        stop_panel(proc)
            finally:
                browser.close()
        t.notes.append(
            "CPU % = process CPU seconds over the reply's wall time (send to recorded stats); Chromium = all its "
            "processes. Both share the 2 cores with the engine, so the engine's decode speed shows what the "
            "panel and the browser take from it."
        )
    finally:
        rt.close()
    return t


if __name__ == "__main__":
    print(main().markdown())
