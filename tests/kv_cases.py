"""The configurations the KV-cache matrix runs against the real engine (tests and bench/b6)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from zoe_panel.models.demo import GEMMA3_270M, SMOLLM2
from zoe_panel.models.synth import SynthShape

if TYPE_CHECKING:
    from zoe_panel.engine.base import EngineSpec
    from zoe_panel.runtime import Runtime

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


# A synthetic model with a vocabulary of neither real tokenizer (SmolLM2's + 100k tokens): the
# engine's tables are predicted per entry from the two real ones, this case checks it elsewhere.
SYNTH_EXTRA_VOCAB = {"synth-llama-bigvocab.gguf": 100_000}
SYNTH["synth-llama-bigvocab.gguf"] = SynthShape(n_layer=4, n_embd=128, n_head=4, n_head_kv=2)


def write_synth_models(folder: Path, tokenizer_source: Path, only: set[str] | None = None) -> None:
    """Write the matrix's synthetic models (those in ``only``, or all) into ``folder``."""
    from zoe_panel.models.synth import extend_vocab, read_tokenizer, write_synthetic

    tok = read_tokenizer(tokenizer_source)
    for name, shape in SYNTH.items():
        if only is not None and name not in only:
            continue
        extra = SYNTH_EXTRA_VOCAB.get(name, 0)
        write_synthetic(folder / name, shape, extend_vocab(tok, extra) if extra else tok, seed=len(name))


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

    def spec(self, rt: Runtime) -> EngineSpec:
        """The engine settings this case stands for, from the runtime's defaults."""
        return rt.default_spec(
            self.model,
            ctx=self.ctx,
            parallel=self.parallel,
            kv_unified=self.unified,
            cache_type_k=self.cache,
            cache_type_v=self.cache,
            flash_attn=self.flash_attn,
            ubatch=self.ubatch,
            swa_full=self.swa_full,
        )

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
    Case("synth-llama-bigvocab.gguf", 2048),
]
