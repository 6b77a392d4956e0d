"""The Models page in a real browser: a Hub repo's files with their fit before any download (headers
over Range requests from a local Hub-like server), then a Hugging Face checkpoint converted and
quantized into the library."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import CACHE, engine_runtime, free_port, require, wait_for
from hub_server import FakeHub
from panel_server import panel

from zoe_panel.models.convert import support
from zoe_panel.models.synth import SynthShape, read_tokenizer, write_header_only
from zoe_panel.settings import Settings

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[2]
SMOL = "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_fit_before_download_and_convert_from_the_browser(  # type: ignore[no-untyped-def]
    browser, settings_with_model: Settings, smollm2: Path, zoe_home: Path, tmp_path: Path
) -> None:
    sup = support(CACHE)
    require(sup.ready, f"conversion support {sup.detail}")
    ck = tmp_path / "tiny-llama"
    made = subprocess.run(
        [str(sup.python), str(ROOT / "tests/make_hf_checkpoint.py"), str(ck), "--hidden", "256"], capture_output=True
    )
    assert made.returncode == 0, made.stderr[-1000:]
    hub = FakeHub()
    hub.add("org/models-GGUF", SMOL, smollm2)
    big = SynthShape(n_layer=32, n_embd=4096, n_head=32, n_head_kv=32, n_ff=11008, name="llama-7b-like")
    hub.add(
        "org/models-GGUF",
        "llama-7b-like-Q4_K.gguf",
        write_header_only(tmp_path / "7b.gguf", big, read_tokenizer(smollm2)),
    )
    server, url = hub.serve()
    env = {"ZOE_HOME": str(zoe_home), "ZOE_ENGINE_PORT": os.environ["ZOE_ENGINE_PORT"], "HF_ENDPOINT": url}
    try:
        with panel(free_port(), env) as panel_url:
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            page.set_default_timeout(90_000)
            page.goto(panel_url)
            page.get_by_role("link", name="Models").click()
            page.get_by_role("heading", name="Models").wait_for()
            page.locator(".st-key-models-hf-repo input").fill("org/models-GGUF")
            page.locator(".st-key-models-hf-list button").click()
            page.locator(".st-key-models-hf-fit button").click()
            table = page.locator(".st-key-models-hf-fit-table")
            table.wait_for()
            wait_for(lambda: "fits" in table.inner_text() or "tight" in table.inner_text(), 60, 0.5)
            text = table.inner_text()
            assert "llama-7b-like-Q4_K.gguf" in text and "SmolLM2" in text
            # nothing was downloaded: two headers read, no file sent whole
            assert all(f.bytes_sent < 4 << 20 for f in hub.repos["org/models-GGUF"].values())
            assert sorted(p.name for p in (zoe_home / "models").glob("*.gguf")) == [SMOL]

            page.get_by_role("tab", name="Convert a checkpoint").click()
            page.locator(".st-key-models-convert-src input").fill(str(ck))
            page.locator(".st-key-models-convert-name input").fill("browser-llama")
            page.locator(".st-key-models-convert-quant").click()
            page.get_by_role("option", name="Q4_K_M").click()
            page.locator(".st-key-models-convert-go button").click()
            wait_for(lambda: (zoe_home / "models" / "browser-llama.gguf").exists(), 180, 0.5)
            page.locator('[class*="st-key-job-"]').get_by_text("done").first.wait_for()
            page.screenshot(path=str(zoe_home / "models-convert.png"), full_page=True)
    finally:
        server.shutdown()
        with engine_runtime(settings_with_model, engine=False) as rt:
            names = rt.store.names()
        assert "browser-llama.gguf" in names and not any("F16" in n for n in names)
