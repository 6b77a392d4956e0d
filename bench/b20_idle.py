"""Benchmark 20: what the panel costs when nobody is doing anything, with the real engine READY
and idle. Rows: the panel with no browser; with one Monitor tab open (real Chromium); with one
Engine tab open. Each: the panel process's CPU (% of one core, its whole process tree) over a
window, Chromium's, and the engine's. Baseline, in the same run: the engine alone over the same
window (llama-server idling: its own cost, which the panel cannot change)."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
from common import Table, chromium, chromium_cpu, scratch_runtime, serve_panel, stop_panel, tree_cpu

from zoe_panel.models.demo import SMOLLM2


def window(procs: dict[str, psutil.Process | None], seconds: float) -> dict[str, float]:
    """% of one core each over ``seconds`` (None = Chromium, all its processes)."""
    before = {k: (tree_cpu(p) if p else chromium_cpu()) for k, p in procs.items()}
    t0 = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - t0
    return {k: 100 * ((tree_cpu(p) if p else chromium_cpu()) - before[k]) / wall for k, p in procs.items()}


def main(smoke: bool = False) -> Table:
    from playwright.sync_api import sync_playwright

    seconds = 2.0 if smoke else float(__import__("os").environ.get("B20_SECONDS", "60"))
    settle = 1.0 if smoke else 3.0  # past a start or a first render before a window
    t = Table(
        f"20. Idle cost over {seconds:.0f} s (SmolLM2 READY and idle; the panel's default sampler)",
        ["state", "panel CPU % of a core", "Chromium CPU %", "engine CPU %"],
    )
    rt = scratch_runtime()
    try:
        st = rt.engine.start(rt.default_spec(SMOLLM2.filename, ctx=4096, parallel=1))
        st = rt.engine.wait(120)
        engine = psutil.Process(st.pid) if st.pid else None
        time.sleep(settle)
        alone = window({"engine": engine}, seconds)
        t.add("engine alone, no panel (baseline)", None, None, round(alone["engine"], 2))
        proc, url = serve_panel(Path(rt.settings.home), rt.settings.engine_port)
        try:
            panel = psutil.Process(proc.pid)
            time.sleep(settle + 2)  # the panel's own start (imports, first sample) is not idle
            r = window({"panel": panel, "engine": engine}, seconds)
            t.add("panel, no browser", round(r["panel"], 2), None, round(r["engine"], 2))
            with sync_playwright() as pw:
                browser = chromium(pw)
                try:
                    for label, path, sel in (
                        ("panel + one Monitor tab", "/monitor", ".st-key-monitor-chart .js-plotly-plot"),
                        ("panel + one Engine tab", "/engine", ".st-key-engine-start"),
                    ):
                        page = browser.new_page()
                        page.set_default_timeout(120_000)
                        page.goto(url + path)
                        page.locator(sel).first.wait_for()
                        time.sleep(settle)  # past the first render
                        r = window({"panel": panel, "chromium": None, "engine": engine}, seconds)
                        t.add(label, round(r["panel"], 2), round(r["chromium"], 1), round(r["engine"], 2))
                        page.close()
                finally:
                    browser.close()
        finally:
            stop_panel(proc)
        t.notes.append(
            "% of one core = CPU seconds over the window's wall time. The engine is idle (no request); "
            "the panel samples memory and the engine's health in the background whether or not a page is open."
        )
    finally:
        rt.close()
    return t


if __name__ == "__main__":
    print(main().markdown())
