"""The Lab from a browser: a two-configuration sweep of SmolLM2 runs as a job with progress, its
table and Pareto chart appear, and Apply saves the recommendation as the model's preset."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from conftest import free_port, require_llama_server, wait_for
from panel_server import panel

from zoe_panel.models.demo import SMOLLM2
from zoe_panel.runtime import Runtime

pytestmark = pytest.mark.browser


def test_sweep_from_the_lab_page(browser, settings_with_model, zoe_home: Path) -> None:  # type: ignore[no-untyped-def]
    require_llama_server(settings_with_model)
    metrics_port = free_port()
    env = {
        "ZOE_HOME": str(zoe_home),
        "ZOE_ENGINE_PORT": os.environ["ZOE_ENGINE_PORT"],
        "ZOE_EXPORTER_PORT": str(metrics_port),
    }
    try:
        with panel(free_port(), env) as url:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.set_default_timeout(60_000)
            page.goto(url)
            page.get_by_role("link", name="Lab").click()
            page.get_by_role("heading", name="Lab").wait_for()
            # the panel process serves the Prometheus metrics on its own port
            metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
            assert 'zoe_engine_state{state="stopped"} 1.0' in metrics and "zoe_memory_available_bytes" in metrics
            page.locator(".st-key-lab-ctx input").fill("1024, 2048")
            page.locator(".st-key-lab-start button").click()
            table = page.locator(".st-key-lab-table")
            # both configurations finished: two rows whose outcome cell reads "ok"
            wait_for(lambda: table.count() and table.inner_text().split().count("ok") >= 2, 240, 1.0)
            text = table.inner_text()
            assert "ctx=1024" in text and "ctx=2048" in text and "★" in text, text
            page.locator(".st-key-lab-pareto .js-plotly-plot").first.wait_for()
            page.locator(".st-key-lab-apply button").click()
            page.get_by_text("preset").first.wait_for()
            page.screenshot(path=str(zoe_home / "lab.png"), full_page=True)
        rt = Runtime(settings_with_model, sampler=False)
        try:
            preset = rt.presets.get(SMOLLM2.filename)
            assert preset is not None and preset.ctx in (1024, 2048)
        finally:
            rt.close()
    finally:
        rt = Runtime(settings_with_model, sampler=False)
        try:
            if rt.engine.status(max_age_s=0).state.is_running:
                rt.engine.stop(timeout_s=5)
        finally:
            rt.close()
