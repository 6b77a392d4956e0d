"""Proof against the real engine: llama-server's own KV sizes equal the estimate, byte for byte
at the 0.01 MiB llama.cpp prints, with cells and layers exactly equal.

Real models (SmolLM2-135M, Gemma-3-270M with its sliding window) over contexts, cache types and
slot layouts, plus synthetic GGUFs (real SmolLM2 tokenizer, random weights) for shapes no small
download has: GQA ratios, MQA, head sizes, per-layer KV heads, SWA patterns.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import CACHE, free_port, link_model, require

from zoe_panel.engine.binary import find_llama_server
from zoe_panel.errors import BinaryNotFound
from zoe_panel.models.demo import GEMMA3_270M, SMOLLM2
from zoe_panel.models.synth import SynthShape, read_tokenizer, write_synthetic
from zoe_panel.runtime import Runtime
from zoe_panel.settings import load_settings
from zoe_panel.trial import trial_run

pytestmark = pytest.mark.integration
MIB = 1024 * 1024

SYNTH = {
    "synth-llama-gqa4.gguf": SynthShape(n_layer=6, n_embd=256, n_head=8, n_head_kv=2),
    "synth-llama-mha.gguf": SynthShape(n_layer=3, n_embd=128, n_head=4, n_head_kv=4),
    "synth-llama-mqa-h128.gguf": SynthShape(n_layer=5, n_embd=256, n_head=4, n_head_kv=1, head_dim=128),
    "synth-deci-perlayer.gguf": SynthShape(
        arch="deci", n_layer=4, n_embd=128, n_head=4, n_head_kv=(4, 2, 1, 2), head_dim=64
    ),
    "synth-gemma3-swa6.gguf": SynthShape(
        arch="gemma3", n_layer=7, n_embd=128, n_head=4, n_head_kv=2, head_dim=64, sliding_window=256
    ),
    "synth-gemma3-swa3.gguf": SynthShape(
        arch="gemma3", n_layer=9, n_embd=128, n_head=2, n_head_kv=1, head_dim=128, sliding_window=384, swa_pattern=3
    ),
}


@dataclass(frozen=True)
class Case:
    model: str
    ctx: int
    parallel: int = 1
    unified: bool = True
    cache: str = "f16"
    flash_attn: str = "auto"
    ubatch: int = 512
    swa_full: bool = False

    def __str__(self) -> str:
        return (
            f"{self.model.split('.')[0]}-c{self.ctx}-np{self.parallel}{'u' if self.unified else 's'}-"
            f"{self.cache}-fa{self.flash_attn}-ub{self.ubatch}{'-swafull' if self.swa_full else ''}"
        )


S, G = SMOLLM2.filename, GEMMA3_270M.filename
CASES = [
    Case(S, 512),
    Case(S, 1000),
    Case(S, 4096),
    Case(S, 8192, cache="q8_0"),
    Case(S, 4096, cache="q4_0"),
    Case(S, 2048, parallel=4),
    Case(S, 4096, parallel=3, unified=False),
    Case(S, 2048, flash_attn="off"),
    Case(S, 2048, cache="q5_1"),
    Case(S, 2048, cache="iq4_nl"),
    Case(S, 2048, cache="bf16"),
    Case(G, 2048),
    Case(G, 8192),
    Case(G, 4096, parallel=4),
    Case(G, 4096, parallel=2, unified=False),
    Case(G, 4096, ubatch=128),
    Case(G, 4096, swa_full=True),
    Case(G, 4096, cache="q8_0"),
    Case("synth-llama-gqa4.gguf", 3000),
    Case("synth-llama-mha.gguf", 1024, cache="q4_0"),
    Case("synth-llama-mqa-h128.gguf", 2048, parallel=2, unified=False),
    Case("synth-deci-perlayer.gguf", 1024),
    Case("synth-deci-perlayer.gguf", 1024, flash_attn="off"),
    Case("synth-gemma3-swa6.gguf", 2048),
    Case("synth-gemma3-swa6.gguf", 2048, parallel=3),
    Case("synth-gemma3-swa3.gguf", 4096, cache="q8_0"),
]


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    for m in (SMOLLM2, GEMMA3_270M):
        require((CACHE / "models" / m.filename).is_file(), f"{m.filename} missing: run scripts/test.sh")
    home = tmp_path_factory.mktemp("matrix")
    models = home / "models"
    for m in (SMOLLM2, GEMMA3_270M):
        link_model(CACHE / "models" / m.filename, models)
    tok = read_tokenizer(CACHE / "models" / SMOLLM2.filename)
    for name, shape in SYNTH.items():
        write_synthetic(models / name, shape, tok, seed=len(name))
    settings = load_settings(
        {
            "ZOE_HOME": str(home),
            "ZOE_ENGINE_PORT": str(free_port()),
            "ZOE_CACHE": str(CACHE),
            **({"PATH": os.environ["PATH"]}),
        }
    )
    try:
        find_llama_server(settings)
    except BinaryNotFound as e:
        require(False, str(e))
    runtime = Runtime(settings, sampler=False)
    yield runtime
    runtime.close()


def mib2(n: int) -> float:
    return round(n / MIB, 2)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_kv_bytes_equal_llama_cpp(rt: Runtime, case: Case) -> None:
    spec = rt.default_spec(
        case.model,
        ctx=case.ctx,
        parallel=case.parallel,
        kv_unified=case.unified,
        cache_type_k=case.cache,
        cache_type_v=case.cache,
        flash_attn=case.flash_attn,
        ubatch=case.ubatch,
        swa_full=case.swa_full,
    )
    result = trial_run(rt, spec, timeout_s=90)
    assert result.ready, f"engine did not load {case}: {result.error}"
    reported = result.kv_events()
    predicted = list(result.estimate.kv)
    assert len(reported) == len(predicted), (reported, predicted)
    for ev, cache in zip(reported, predicted, strict=True):
        assert ev.detail.get("cache", "KV") == cache.name
        assert ev.detail["cells"] == cache.cells and ev.detail["layers"] == cache.layers
        assert ev.detail["type_k"] == cache.type_k and ev.detail["type_v"] == cache.type_v
        assert mib2(ev.detail["k_bytes"]) == mib2(cache.k_bytes)
        assert mib2(ev.detail["v_bytes"]) == mib2(cache.v_bytes)
        assert mib2(ev.bytes or 0) == mib2(cache.bytes)
    compute = result.reported().get("compute_buffer", 0)
    assert compute > 0 and abs(compute - result.estimate.compute_bytes) <= max(0.25 * compute, 2 * MIB)


def test_synthetic_models_are_real_models(rt: Runtime) -> None:
    """The generator's files load and answer a chat in the real engine."""
    from zoe_panel.chat import ChatParams

    spec = rt.default_spec("synth-gemma3-swa6.gguf", ctx=1024)
    rt.start_engine(spec)
    try:
        rt.wait_ready(60)
        text, stats = rt.chat_client().complete([{"role": "user", "content": "hi"}], ChatParams(max_tokens=8))
        assert stats.completion_tokens == 8 and isinstance(text, str)
    finally:
        rt.controller.stop()


def test_model_files_exist(rt: Runtime) -> None:
    names = set(rt.store.names())
    assert set(SYNTH) <= names and S in names and G in names
    assert all(Path(rt.store.root / n).stat().st_size > 1_000_000 for n in SYNTH)
