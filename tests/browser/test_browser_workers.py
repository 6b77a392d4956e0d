"""Workers and a split from the browser: start two rpc-server workers on the Workers page (one bind
outside loopback refused without the flag), plan the split on the Engine page with a verdict per node,
start it, chat through it, and read the per-worker comparison with llama.cpp's buffers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import free_port, require_llama_server, wait_for
from panel_server import panel, pick_option

from zoe_panel.runtime import Runtime

pytestmark = pytest.mark.browser


def test_workers_page_and_a_split_engine(browser, settings_with_model, zoe_home: Path) -> None:  # type: ignore[no-untyped-def]
    require_llama_server(settings_with_model)
    env = {"ZOE_HOME": str(zoe_home), "ZOE_ENGINE_PORT": os.environ["ZOE_ENGINE_PORT"]}
    ports = [free_port(), free_port()]
    try:
        with panel(free_port(), env) as url:
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            page.set_default_timeout(60_000)
            page.goto(url)
            page.get_by_role("link", name="Workers").click()
            page.get_by_role("heading", name="Workers").wait_for()

            # outside loopback without the flag: refused with the reason, nothing started
            page.locator(".st-key-workers-host input").fill("0.0.0.0")
            page.locator(".st-key-workers-port input").fill(str(ports[0]))
            page.locator(".st-key-workers-start-go button").click()
            page.get_by_text("--allow-remote").first.wait_for()
            page.get_by_text("no authentication").first.wait_for()

            page.locator(".st-key-workers-host input").fill("127.0.0.1")
            for port in ports:
                page.locator(".st-key-workers-port input").fill(str(port))
                page.locator(".st-key-workers-start-go button").click()
                page.locator(".st-key-workers-list").get_by_text(f"127.0.0.1:{port}").first.wait_for()
            table = page.locator(".st-key-workers-list table")
            table.get_by_text("7.0.0").first.wait_for()
            assert table.inner_text().count("running") == 2

            page.get_by_role("link", name="Engine").click()
            page.get_by_role("heading", name="Engine").wait_for()
            pick_option(page, "engine-model", "SmolLM2-135M-Instruct.Q4_1.gguf")
            ctx = page.locator(".st-key-engine-ctx input")
            ctx.fill("2048")
            ctx.press("Enter")
            page.get_by_text("Split over RPC workers").first.click()
            rpc = page.locator(".st-key-engine-rpc input")
            rpc.fill(",".join(f"127.0.0.1:{p}" for p in ports))
            rpc.press("Enter")
            ts = page.locator(".st-key-engine-ts input")
            ts.fill("1,1,0")
            ts.press("Enter")
            split = page.locator(".st-key-engine-split")
            split.get_by_text("-ts 1,1").wait_for()
            text = split.inner_text()
            assert f"127.0.0.1:{ports[0]}" in text and "local" in text and "reported by the worker" in text
            assert "fits" in text

            page.locator(".st-key-engine-start button").first.click()
            page.locator(".st-key-engine-state").get_by_text("READY").wait_for()
            truth = page.locator(".st-key-engine-split-truth")
            truth.wait_for()
            # weights and KV exactly as llama.cpp reported (the table fills once its lines are read)
            wait_for(lambda: "+0.0 %" in truth.inner_text(), 30, 0.5)

            page.get_by_role("link", name="Chat").click()
            box = page.locator(".st-key-chat-input textarea")
            box.fill("Say hello.")
            box.press("Enter")
            page.locator(".st-key-chat-stats").get_by_text("tok/s").wait_for()
            assert page.locator('[data-testid="stChatMessage"]').nth(1).inner_text().strip()

            page.get_by_role("link", name="Workers").click()
            page.locator(".st-key-workers-list").get_by_text("busy").first.wait_for()
            page.screenshot(path=str(zoe_home / "workers.png"), full_page=True)
    finally:
        rt = Runtime(settings_with_model, sampler=False)
        try:
            rt.engine.stop(timeout_s=5)
            rt.workers.stop(all_workers=True, timeout_s=2)
        finally:
            rt.close()
