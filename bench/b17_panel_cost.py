"""Benchmark 17: the panel's own cost while a reply streams into the Chat page of a real browser
(Chromium under Playwright, on the same 2 cores), with the real engine. Baseline: the same engine
answered by a plain client in the same run. Rows: the Chat redrawing on every token (the panel
before the bounded redraw rate, chat_ui_hz = 0) and at 15 redraws a second (the default). For each,
the panel process's CPU (% of one core over the reply), Chromium's, and the engine's own decode
speed (its timings), against the plain client's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
from common import ROOT, Table, free_port, median, scratch_runtime

from zoe_panel.chat import ChatParams
from zoe_panel.models.demo import SMOLLM2

PROMPT = "Write a long story about a lighthouse keeper and a storm, with many details."


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def tree_cpu(proc: psutil.Process) -> float:
    return cpu_seconds([proc, *proc.children(recursive=True)])


def chromium_cpu() -> float:
    return cpu_seconds([p for p in psutil.process_iter(["name"]) if p.info["name"] and "chrom" in p.info["name"]])


def serve(home: Path, engine_port: int, hz: float) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "ZOE_HOME": str(home), "ZOE_ENGINE_PORT": str(engine_port), "ZOE_EXPORTER_PORT": "0"}
    env["ZOE_CHAT_UI_HZ"] = str(hz)
    proc = subprocess.Popen(
        [sys.executable, "-m", "zoe_panel.web", "--server.port", str(port), "--server.headless", "true"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(url + "/_stcore/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the panel did not come up")


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
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
            try:
                for label, hz in (("Chat, a redraw per token (before)", 0.0), ("Chat, 15 redraws/s (now)", 15.0)):
                    proc, url = serve(home, rt.settings.engine_port, hz)
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
                        os.killpg(proc.pid, signal.SIGTERM)
                        proc.wait(10)
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
