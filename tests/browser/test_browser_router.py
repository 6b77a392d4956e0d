"""Router mode from the browser: start the router on the Engine page, load both models there, chat
with each on the Chat page (model picked), see each model's load on the Monitor."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import engine_runtime, free_port, link_model, require_llama_server, wait_for
from panel_server import panel, pick_option

from zoe_panel.settings import Settings

pytestmark = pytest.mark.browser
SMOL, GEMMA = "SmolLM2-135M-Instruct.Q4_1", "gemma-3-270m-q4_k_m"


def test_router_from_the_browser(browser, settings_with_model: Settings, gemma3: Path, zoe_home: Path) -> None:  # type: ignore[no-untyped-def]
    require_llama_server(settings_with_model)
    link_model(gemma3, settings_with_model.models_path)
    env = {"ZOE_HOME": str(zoe_home), "ZOE_ENGINE_PORT": os.environ["ZOE_ENGINE_PORT"]}
    try:
        with panel(free_port(), env) as url:
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.set_default_timeout(90_000)
            page.goto(url)
            page.get_by_role("heading", name="Engine").wait_for()
            pick_option(page, "engine-flavor", "router")
            page.get_by_text("Router mode serves every model of the folder").wait_for()
            page.locator(".st-key-engine-start button").first.click()
            page.locator(".st-key-engine-state").get_by_text("READY").wait_for()
            models = page.locator(".st-key-engine-router-models")
            models.get_by_text(GEMMA).wait_for()
            for i in (0, 1):
                page.locator(f".st-key-engine-load-{i} button").click()
                page.wait_for_timeout(300)
            wait_for(lambda: models.get_by_text("loaded", exact=True).count() == 2, 60, 0.5)

            page.get_by_role("link", name="Chat").click()
            for name in (SMOL, GEMMA):
                pick_option(page, "chat-model", name)
                box = page.locator(".st-key-chat-input textarea")
                box.fill(f"Say hello, {name}.")
                box.press("Enter")
                page.locator(".st-key-chat-stats").get_by_text("tok/s").wait_for()
            replies = page.locator('[data-testid="stChatMessage"]')
            wait_for(lambda: replies.count() >= 4, 60, 0.5)
            assert replies.nth(1).inner_text().strip() and replies.nth(3).inner_text().strip()

            page.get_by_role("link", name="Monitor").click()
            chart = page.locator(".st-key-monitor-chart .js-plotly-plot").first
            chart.wait_for()
            chart.locator(".scatterlayer .trace, .gl-container").first.wait_for()
            page.wait_for_function(
                "names => names.every(n => document.body.innerText.includes(n + ': weights'))", arg=[SMOL, GEMMA]
            )
            page.screenshot(path=str(zoe_home / "router-monitor.png"), full_page=True)
    finally:
        with engine_runtime(settings_with_model, engine=False) as rt:
            try:
                rt.engine.stop(timeout_s=5)
            except Exception:
                pass
