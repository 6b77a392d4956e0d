"""The load view in a real browser: start Gemma-3 on the Engine page, read its load on the Monitor
(zoomed to Start -> READY, phase bands labelled in the chart, predicted parts as reference lines,
CPU on its own axis), then the same run's load on the History page."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import engine_runtime, free_port, link_model, require_llama_server
from panel_server import panel, pick_option

from zoe_panel.settings import Settings

pytestmark = pytest.mark.browser
GEMMA = "gemma-3-270m-q4_k_m.gguf"
# what a reader sees in the chart without hovering: the phase bands and the predicted levels
LABELS = ["weights", "KV cache (SWA)", "compute", "warm-up", "READY", "= at READY", "seconds since Start", "CPU %"]

CHART_TEXT = """key => {
    const plot = document.querySelector('.st-key-' + key + ' .js-plotly-plot');
    if (!plot || !plot.layout) return null;
    const notes = (plot.layout.annotations || []).map(a => a.text);
    const axes = Object.keys(plot.layout).filter(k => k.startsWith('yaxis')).map(k => (plot.layout[k].title || {}).text);
    const x = (plot.layout.xaxis2 || plot.layout.xaxis || {}).title;
    return {notes, axes, x: x ? x.text : '', traces: plot.data.map(t => ({name: t.name, gaps: t.connectgaps}))};
}"""


def _chart(page, key: str) -> dict:  # type: ignore[no-untyped-def]
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        _wait_labels(page, key)
    except PlaywrightTimeout:
        raise AssertionError(f"the {key} chart lacks labels: {page.evaluate(CHART_TEXT, key)}") from None
    return page.evaluate(CHART_TEXT, key)


def _wait_labels(page, key: str) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function(
        f"""labels => {{ const c = ({CHART_TEXT})('{key}'); if (!c) return false;
            const all = c.notes.join(' ') + ' ' + c.axes.join(' ') + ' ' + c.x;
            return labels.every(l => all.includes(l)); }}""",
        arg=LABELS,
        timeout=90_000,
    )


def test_load_view_on_monitor_and_history(browser, settings_with_model: Settings, gemma3: Path, zoe_home: Path) -> None:  # type: ignore[no-untyped-def]
    require_llama_server(settings_with_model)
    link_model(gemma3, settings_with_model.models_path)
    env = {"ZOE_HOME": str(zoe_home), "ZOE_ENGINE_PORT": os.environ["ZOE_ENGINE_PORT"]}
    try:
        with panel(free_port(), env) as url:
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.set_default_timeout(90_000)
            page.goto(url)
            page.get_by_role("heading", name="Engine").wait_for()
            pick_option(page, "engine-model", GEMMA)
            page.get_by_text("--ctx-checkpoints").first.wait_for()  # the after-load flags are shown
            page.locator(".st-key-engine-start button").first.click()
            page.get_by_role("link", name="Monitor").click()
            chart = _chart(page, "monitor-load")
            # measured lines never joined across a gap in the samples
            assert chart["traces"] and all(t["gaps"] is False for t in chart["traces"])
            assert any(n.startswith("weights:") for n in chart["notes"])  # the first predicted level
            page.locator(".st-key-monitor-load").screenshot(path=str(zoe_home / "load-view.png"))
            page.locator(".st-key-monitor-after-ready").get_by_text("Since READY").wait_for()

            page.get_by_role("link", name="History").click()
            page.get_by_role("heading", name="History").wait_for()
            history = _chart(page, "history-load")  # the same labels, from the recorded run
            assert "READY" in history["notes"] and all(t["gaps"] is False for t in history["traces"])
    finally:
        with engine_runtime(settings_with_model, engine=False) as rt:
            try:
                rt.engine.stop(timeout_s=5)
            except Exception:
                pass
