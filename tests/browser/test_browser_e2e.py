"""The whole loop in a real browser: Start → READY → chat → memory chart → Stop."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import free_port, require_llama_server
from panel_server import panel, pick_option

from zoe_panel.runtime import Runtime

pytestmark = pytest.mark.browser


def test_start_chat_watch_stop(browser, settings_with_model, zoe_home: Path) -> None:  # type: ignore[no-untyped-def]
    require_llama_server(settings_with_model)
    env = {"ZOE_HOME": str(zoe_home), "ZOE_ENGINE_PORT": os.environ["ZOE_ENGINE_PORT"]}
    try:
        with panel(free_port(), env) as url:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(url)
            page.get_by_role("heading", name="Engine").wait_for()

            pick_option(page, "engine-model", "SmolLM2-135M-Instruct.Q4_1.gguf")
            ctx = page.locator(".st-key-engine-ctx input")
            ctx.fill("2048")
            ctx.press("Enter")
            page.locator(".st-key-engine-start button").first.click()
            state = page.locator(".st-key-engine-state")
            state.get_by_text("READY").wait_for()

            page.get_by_role("link", name="Chat").click()
            box = page.locator(".st-key-chat-input textarea")
            box.fill("Say hello in one sentence.")
            box.press("Enter")
            assistant = page.locator('[data-testid="stChatMessage"]').nth(1)
            assistant.wait_for()
            stats = page.locator(".st-key-chat-stats")
            stats.get_by_text("tok/s").wait_for()
            assert assistant.inner_text().strip()
            assert "TTFT" in stats.inner_text()

            page.get_by_role("link", name="Monitor").click()
            chart = page.locator(".st-key-monitor-chart .js-plotly-plot").first
            chart.wait_for()
            # plotly draws its traces after the container appears: wait for them (fails on timeout)
            chart.locator(".scatterlayer .trace, .gl-container").first.wait_for()

            page.get_by_role("link", name="Engine").click()
            page.locator(".st-key-engine-stop button").first.click()
            page.locator(".st-key-engine-state").get_by_text("STOPPED").wait_for()
            page.screenshot(path=str(zoe_home / "engine-stopped.png"))
    finally:
        rt = Runtime(settings_with_model, sampler=False)
        try:
            rt.engine.stop(timeout_s=5)
        except Exception:
            pass


def test_upload_checks_the_file_in_the_browser(
    browser,
    settings_with_model,
    zoe_home: Path,
    smollm2: Path,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    """The Upload tab streams the file to PUT /zoe/upload: too big is refused before a byte is sent,
    not-GGUF is refused after, a good file is added; nothing else is left behind."""
    from zoe_panel.models.synth import SynthShape, read_tokenizer, write_synthetic

    good = tmp_path / "tiny-upload.gguf"
    write_synthetic(good, SynthShape(n_layer=2, n_embd=64, n_head=2, n_head_kv=1, n_ff=128), read_tokenizer(smollm2))
    bad = tmp_path / "not-a-model.gguf"
    bad.write_bytes(b"this is text, not GGUF\n" * 50)
    huge = tmp_path / "too-big.gguf"
    huge.write_bytes(good.read_bytes() * 3)  # 24 MB, over the 20 MB limit set below
    env = {
        "ZOE_HOME": str(zoe_home),
        "ZOE_ENGINE_PORT": os.environ["ZOE_ENGINE_PORT"],
        "ZOE_UPLOAD_MAX_MB": "20",
    }
    with panel(free_port(), env) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        page.set_default_timeout(60_000)
        page.goto(url + "/models")
        page.get_by_role("heading", name="Models").wait_for()
        page.get_by_role("tab", name="Upload").click()
        frame = page.frame_locator("iframe[data-testid=stIFrame], iframe[title='st.iframe']").first
        for path, says in (
            (huge, "larger than the upload cap"),
            (bad, "not a GGUF file"),
            (good, "Added tiny-upload.gguf"),
        ):
            frame.locator("#zoe-upload-file").set_input_files(str(path))
            frame.locator("#zoe-upload-go").click()
            frame.get_by_text(says).wait_for()
        page.locator(".st-key-models-upload-state").get_by_text("added tiny-upload.gguf").wait_for()
    assert (zoe_home / "models" / "tiny-upload.gguf").stat().st_size == good.stat().st_size
    assert not (zoe_home / "models" / "not-a-model.gguf").exists()
    assert not (zoe_home / "models" / "too-big.gguf").exists()
    assert not any(p.is_file() for p in (zoe_home / "models" / ".staging").glob("*"))


def test_stop_mid_reply_in_the_browser(browser, settings_with_model, zoe_home: Path) -> None:  # type: ignore[no-untyped-def]
    from zoe_panel.engine.metrics import engine_load

    rt = Runtime(settings_with_model, sampler=False)
    rt.engine.start(rt.default_spec("SmolLM2-135M-Instruct.Q4_1.gguf", ctx=4096))
    st = rt.engine.wait(60, on_poll=rt.recording())
    env = {"ZOE_HOME": str(zoe_home), "ZOE_ENGINE_PORT": os.environ["ZOE_ENGINE_PORT"]}
    try:
        with panel(free_port(), env) as url:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(url + "/chat")
            page.locator(".st-key-chat-max-tokens input").fill("3000")
            page.locator(".st-key-chat-max-tokens input").press("Enter")
            box = page.locator(".st-key-chat-input textarea")
            box.fill("Write a very long story about dragons, with many chapters.")
            box.press("Enter")
            assistant = page.locator('[data-testid="stChatMessage"]').nth(1)
            assistant.wait_for()
            page.wait_for_function(
                "() => { const m = document.querySelectorAll('[data-testid=stChatMessage]'); "
                "return m.length > 1 && m[1].innerText.length > 40; }"
            )
            page.locator(".st-key-chat-stop button").first.click()
            page.get_by_text("stopped", exact=True).wait_for()
            assert len(page.locator('[data-testid="stChatMessage"]').nth(1).inner_text()) > 40
            from conftest import wait_for

            key = st.spec.api_key if st.spec else ""
            wait_for(lambda: engine_load(st.base_url or "", key).slots_busy == 0, 10)
            assert (engine_load(st.base_url or "", key).tokens_predicted_total or 0) < 2500
    finally:
        rt.engine.stop()
