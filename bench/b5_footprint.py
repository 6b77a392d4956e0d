"""Benchmark 5: panel footprint. Memory and Monitor-page render time with one hour of history
(36,000 samples: an hour at the 10 Hz loading rate), concurrent sessions on one sampler.

Runs the panel's own code in this process: Runtime, ring, plotly figure, and the Monitor page
through Streamlit's AppTest (the same script the server runs, without a browser)."""

from __future__ import annotations

import gc
import threading
import time

import psutil
from common import ROOT, Table, median, p90, scratch_runtime
from streamlit.testing.v1 import AppTest

from zoe_panel.runtime import set_runtime
from zoe_panel.telemetry.base import Sample
from zoe_panel.telemetry.ring import downsample
from zoe_panel.ui.charts import memory_figure

APP = str(ROOT / "app.py")


def fill(ring, seconds: float, hz: float) -> None:  # type: ignore[no-untyped-def]
    now = time.time()
    n = int(seconds * hz)
    for i in range(n):
        t = now - seconds + i / hz
        used = int(6e9 + 2e9 * ((i % 600) / 600))
        ring.append(
            Sample(
                t=t,
                source="host",
                ram_total_bytes=16 * 2**30,
                ram_used_bytes=used,
                ram_available_bytes=16 * 2**30 - used,
                ram_cached_bytes=2 * 2**30,
                cpu_pct=float(i % 100),
                engine_rss_bytes=used // 3,
            )
        )


def render_times(window_label: str, n: int) -> list[float]:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("pages/monitor.py").run()
    at.radio(key="monitor-window").set_value(window_label).run()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        at.run()
        out.append((time.perf_counter() - t) * 1000)
        assert not at.exception, at.exception
    return out


def main(smoke: bool = False) -> Table:
    reps = 3 if smoke else 10
    proc = psutil.Process()
    rt = scratch_runtime()
    set_runtime(rt)
    gc.collect()
    rss0 = proc.memory_info().rss
    import tracemalloc

    tracemalloc.start()
    fill(rt.ring, 3600, 10.0)
    ring_bytes, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    samples = rt.ring.snapshot()
    t_full = []
    t_down = []
    for _ in range(reps):
        t = time.perf_counter()
        memory_figure(samples).to_plotly_json()
        t_full.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        memory_figure(downsample(samples, 1500)).to_plotly_json()
        t_down.append((time.perf_counter() - t) * 1000)
    page_1min = render_times("1 min", reps)
    page_1h = render_times("1 h", reps)
    # eight AppTest sessions, one after another, on the one process-wide runtime: still one sampler
    rt.start_sampler()
    for _ in range(8):
        render_times("5 min", 1)
    samplers = [th for th in threading.enumerate() if th.name == "zoe-sampler"]
    rss2 = proc.memory_info().rss
    rt.close()
    set_runtime(None)
    tabs = 2 if smoke else 4  # 8 Chromium renderers on 2 cores time out: the browser, not the panel
    single, _ = browser_sessions(1, smoke)
    times, server_rss = browser_sessions(tabs, smoke)
    t = Table(
        "5. Panel footprint with one hour of history (36,000 samples) and concurrent sessions",
        ["measure", "value", "baseline", "ratio"],
    )
    t.add("ring of 1 h of samples: memory (MiB, tracemalloc)", ring_bytes / 2**20, None, None)
    t.add("process RSS with 1 h of history after 8 AppTest sessions (MiB)", rss2 / 2**20, rss0 / 2**20, rss2 / rss0)
    t.add(f"streamlit server RSS after {tabs} browser sessions (MiB)", server_rss / 2**20, None, None)
    t.add(
        "memory chart build, 1 h downsampled to 1500 points (ms, median)",
        median(t_down),
        median(t_full),
        median(t_down) / median(t_full),
    )
    t.add(
        "Monitor page run with the 1 h window (ms, median)",
        median(page_1h),
        median(page_1min),
        median(page_1h) / median(page_1min),
    )
    t.add(
        f"Monitor page load in Chromium, {tabs} tabs at once on a fresh server (ms, median; baseline 1 tab)",
        median(times),
        median(single),
        median(times) / median(single),
    )
    t.add("sampler threads with 8 sessions", len(samplers), 1, len(samplers) / 1)
    t.notes.append(
        f"p90 of the {tabs}-tab page loads: {p90(times):.0f} ms (time until the chart is drawn). On 2 cores the "
        "Chromium renderers dominate that time; 8 tabs at once time out in the browser, so 4 are opened. "
        "Other baselines: the full 36,000-point chart, the 1-minute window. Page runs are Streamlit AppTest runs "
        "of the real page script; the sampler count is taken with 8 AppTest sessions on one runtime."
    )
    return t


if __name__ == "__main__":
    print(main().markdown())


def browser_sessions(n: int, smoke: bool) -> tuple[list[float], int]:
    """n Chromium tabs open the Monitor page of a real `streamlit run app.py` at the same moment."""
    import asyncio
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    from panel_server import CHROMIUM, CHROMIUM_ARGS, panel
    from playwright.async_api import async_playwright

    rt = scratch_runtime()
    env = {"ZOE_HOME": str(rt.settings.home), "ZOE_ENGINE_PORT": str(rt.settings.engine_port)}
    rt.close()

    async def run(url: str) -> list[float]:
        async with async_playwright() as p:
            b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            pages = [await b.new_page() for _ in range(n)]
            for pg in pages:
                pg.set_default_timeout(300_000)

            async def one(page) -> float:  # type: ignore[no-untyped-def]
                t = time.perf_counter()
                await page.goto(url + "/monitor")
                await page.locator(".st-key-monitor-chart .js-plotly-plot").first.wait_for(timeout=300_000)
                return (time.perf_counter() - t) * 1000

            out = list(await asyncio.gather(*(one(pg) for pg in pages)))
            await b.close()
            return out

    from common import free_port

    with panel(free_port(), env) as url:
        times = asyncio.run(run(url))
        server = next(
            p
            for p in psutil.process_iter(["cmdline"])
            if "streamlit" in " ".join(p.info["cmdline"] or []) and p.environ().get("ZOE_HOME") == env["ZOE_HOME"]
        )
        rss = server.memory_info().rss
    return times, rss
