"""Hugging Face checkpoint -> GGUF with llama.cpp's own converter, on a real-shaped Llama checkpoint
made here (random weights, a SentencePiece tokenizer trained on this repository's text): converted,
quantized, loaded by llama-server and answering. AWQ, unsupported architectures and a converter
failure are refused with the reason, and leave nothing behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CACHE, engine_runtime, require
from hub_server import FakeHub

from zoe_panel.chat import ChatParams
from zoe_panel.models.convert import ConvertError, support
from zoe_panel.runtime import Runtime
from zoe_panel.settings import Settings

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sup = support(CACHE)
    require(sup.ready, f"conversion support {sup.detail} (scripts/test_env.sh installs it)")
    out = tmp_path_factory.mktemp("hf") / "tiny-llama"
    done = subprocess.run(
        [str(sup.python), str(ROOT / "tests/make_hf_checkpoint.py"), str(out), "--hidden", "256"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return out


@pytest.fixture
def rt(settings_with_model: Settings) -> Iterator[Runtime]:
    with engine_runtime(settings_with_model) as runtime:
        yield runtime


def _finish(rt: Runtime, job) -> Path:  # type: ignore[no-untyped-def]
    job = rt.jobs.wait(job, 600)
    assert job.state == "done", job.error
    return Path(job.result)


def _leftovers(rt: Runtime) -> list[str]:
    staging = [p.name for p in rt.store.root.glob(".*/*")]
    return staging + [p.name for p in rt.store.root.glob("*.part")]


def test_a_checkpoint_is_converted_quantized_loaded_and_answers(rt: Runtime, checkpoint: Path) -> None:
    out = _finish(rt, rt.start_convert(str(checkpoint), quantize="Q4_K_M", name="tiny-llama-Q4_K_M"))
    assert out.name == "tiny-llama-Q4_K_M.gguf" and out.name in rt.store.names()
    assert not any(n.endswith("F16.gguf") for n in rt.store.names())  # the intermediate is gone
    info = rt.store.info(out)
    assert info.architecture == "llama" and info.get("tokenizer.ggml.tokens.count") == 2000
    assert "Q4_K" in info.matrix_bytes  # quantized
    rt.engine.start(rt.default_spec(out.name, ctx=512, parallel=1))
    rt.engine.wait(60)
    _, stats = rt.chat_client().complete([{"role": "user", "content": "hello"}], ChatParams(max_tokens=8))
    assert stats.completion_tokens > 0
    rt.engine.stop()
    assert _leftovers(rt) == []


def test_refusals_leave_nothing_behind(rt: Runtime, checkpoint: Path, tmp_path: Path) -> None:
    awq = tmp_path / "awq"
    shutil.copytree(checkpoint, awq)
    cfg = json.loads((awq / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "awq", "bits": 4, "group_size": 128}
    (awq / "config.json").write_text(json.dumps(cfg))
    (awq / "README.md").write_text("---\nbase_model: org/tiny-llama\nlicense: mit\n---\n# an AWQ model\n")
    with pytest.raises(ConvertError, match="AWQ-packed") as e:
        rt.start_convert(str(awq))
    assert e.value.base_model == "org/tiny-llama" and "base model instead: org/tiny-llama" in str(e.value)

    alien = tmp_path / "alien"
    shutil.copytree(checkpoint, alien)
    cfg = json.loads((alien / "config.json").read_text())
    cfg["architectures"] = ["NotARealModelForCausalLM"]
    (alien / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConvertError, match="NotARealModelForCausalLM is not supported"):
        rt.start_convert(str(alien))

    # config and weights disagree (3 layers claimed, 2 present): the converter writes a file that
    # llama.cpp would refuse; the panel catches it, the job fails, no file is kept
    broken = tmp_path / "broken"
    shutil.copytree(checkpoint, broken)
    cfg = json.loads((broken / "config.json").read_text())
    cfg["num_hidden_layers"] = 3  # the weights have 2 layers
    (broken / "config.json").write_text(json.dumps(cfg))
    before = set(rt.store.names())
    job = rt.jobs.wait(rt.start_convert(str(broken)), 600)
    assert job.state == "failed" and "no weights for layer 2 of 3" in job.error
    assert set(rt.store.names()) == before and _leftovers(rt) == []


def test_a_hub_repo_is_fetched_converted_and_its_source_removed(rt: Runtime, checkpoint: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    hub = FakeHub()
    for f in checkpoint.iterdir():
        hub.add("org/tiny-llama", f.name, f)
    server, url = hub.serve()
    monkeypatch.setenv("HF_ENDPOINT", url)
    try:
        out = _finish(rt, rt.start_convert("org/tiny-llama", outtype="q8_0"))
    finally:
        server.shutdown()
    assert out.name == "org--tiny-llama-Q8_0.gguf" or out.name.endswith("-Q8_0.gguf")
    assert rt.store.info(out).tensor_count > 0
    assert not (rt.settings.cache_dir / "hf-src" / "org--tiny-llama").exists()


def test_cli_convert_and_status(settings_with_model: Settings, checkpoint: Path) -> None:
    env = {**os.environ, "ZOE_HOME": str(settings_with_model.home)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "zoe_panel", "convert", *args, "--json"],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=600,
        )

    status = cli("--status")
    assert status.returncode == 0 and json.loads(status.stdout)["ready"] is True
    done = cli(str(checkpoint), "--name", "from-cli.gguf")
    assert done.returncode == 0, done.stderr[-1500:]
    data = json.loads(done.stdout)
    assert data["output"].endswith("from-cli.gguf") and data["size_bytes"] > 1_000_000
    refused = cli(str(checkpoint.parent / "nothing-here"))
    assert (
        refused.returncode != 0
        and "neither a checkpoint folder nor a Hub repository" in refused.stdout + refused.stderr
    )
