"""Interpret GGUF hyper-parameters the way llama.cpp does (src/llama-model.cpp, llama-hparams.cpp).

Only what decides memory is modelled: per-layer KV heads and head sizes, which layers use a
sliding window, MLA (no V cache), recurrent state sizes, and hybrid layer filters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zoe_panel.models.gguf_meta import GGUFInfo

# arch -> (default swa pattern, dense_first, default window or None = key required)
# from the load_swa_pattern(ml, N[, dense_first]) calls in src/models/*.cpp
_SWA_ARCHS: dict[str, tuple[int, bool, int | None]] = {
    "gemma2": (2, False, 4096),
    "gemma3": (6, False, None),
    "gemma3n": (5, False, None),
    "gemma-embedding": (6, False, None),
    "cohere2": (4, False, None),
    "cohere2moe": (4, True, None),
    "exaone4": (4, False, None),
    "exaone-moe": (4, False, 128),
    "llama4": (4, False, 8192),
    "olmo2": (4, False, None),
    "gpt-oss": (2, False, None),
    "openai-moe": (2, False, None),
    "afmoe": (4, False, None),
    "mellum": (4, False, None),
    "plamo3": (8, False, None),
    "smallthinker": (4, True, None),
}
_RECURRENT_ARCHS = {"mamba", "mamba2", "rwkv6", "rwkv6qwen2", "rwkv7", "arwkv7"}
_HYBRID_ARCHS = {
    "jamba",
    "falcon-h1",
    "plamo2",
    "granitehybrid",
    "lfm2",
    "lfm2moe",
    "nemotron_h",
    "nemotron_h_moe",
    "qwen3next",
    "qwen35",
    "qwen35moe",
    "kimi-linear",
    "minimax-01",
}
_MLA_ARCHS = {"deepseek2", "deepseek3", "glm4moe-lite", "kimi-k2", "plm", "minicpm3"}


@dataclass(frozen=True)
class LayerAttn:
    """One transformer block as the KV cache sees it."""

    index: int
    n_head_kv: int
    head_k: int
    head_v: int
    is_swa: bool
    has_kv: bool
    is_recurrent: bool

    @property
    def k_row(self) -> int:
        return self.head_k * self.n_head_kv

    @property
    def v_row(self) -> int:
        return self.head_v * self.n_head_kv


@dataclass(frozen=True)
class ModelShape:
    architecture: str
    n_layer: int
    n_embd: int
    n_head: int
    n_vocab: int
    n_ctx_train: int
    n_swa: int  # 0 = no sliding window
    layers: tuple[LayerAttn, ...]
    is_mla: bool
    is_recurrent: bool  # pure recurrent: no attention KV at all
    is_hybrid: bool
    recurrent_r: int  # floats per sequence per recurrent layer (conv / token-shift state)
    recurrent_s: int  # floats per sequence per recurrent layer (ssm / wkv state)
    n_ff: int

    @property
    def kv_layers(self) -> list[LayerAttn]:
        return [la for la in self.layers if la.has_kv and not la.is_recurrent]

    @property
    def uses_swa(self) -> bool:
        return self.n_swa > 0 and any(la.is_swa for la in self.kv_layers)


def _per_layer(value: Any, n_layer: int, default: int) -> list[int]:
    if value is None:
        return [default] * n_layer
    if isinstance(value, list):
        vals = [int(v) for v in value]
        return (vals + [vals[-1] if vals else default] * n_layer)[:n_layer]
    return [int(value)] * n_layer


def _swa_flags(info: GGUFInfo, arch: str, n_layer: int) -> tuple[list[bool], int]:
    n_swa = int(info.arch_key("attention.sliding_window", 0) or 0)
    pattern_value = info.arch_key("attention.sliding_window_pattern")
    if arch == "phi3" and n_swa > 0:
        return [True] * n_layer, n_swa  # phi3 sets every layer to SWA when a window is given
    if arch not in _SWA_ARCHS:
        if isinstance(pattern_value, list) and n_swa > 0:
            return [bool(v) for v in pattern_value][:n_layer], n_swa
        return [False] * n_layer, 0
    default_pattern, dense_first, default_window = _SWA_ARCHS[arch]
    if n_swa == 0 and default_window is not None:
        n_swa = default_window
    if n_swa == 0:
        return [False] * n_layer, 0
    if isinstance(pattern_value, list):
        flags = [bool(v) for v in pattern_value]
        return (flags + [False] * n_layer)[:n_layer], n_swa
    p = int(pattern_value) if pattern_value is not None else default_pattern
    if dense_first:
        return [p == 0 or (il % p != 0) for il in range(n_layer)], n_swa
    return [p == 0 or (il % p < p - 1) for il in range(n_layer)], n_swa


def model_shape(info: GGUFInfo) -> ModelShape:
    """Derive the memory-relevant shape; unknown keys fall back to llama.cpp's defaults."""
    arch = info.architecture
    n_layer = int(info.arch_key("block_count", 0) or 0)
    n_nextn = int(info.arch_key("nextn_predict_layers", 0) or 0)
    n_embd = int(info.arch_key("embedding_length", 0) or 0)
    heads = _per_layer(info.arch_key("attention.head_count"), n_layer, 0)
    n_head = heads[0] if heads else 0
    heads_kv = _per_layer(info.arch_key("attention.head_count_kv"), n_layer, n_head)
    default_head = n_embd // n_head if n_head else 0
    head_k = int(info.arch_key("attention.key_length", default_head) or default_head)
    head_v = int(info.arch_key("attention.value_length", default_head) or default_head)
    swa, n_swa = _swa_flags(info, arch, n_layer)
    is_mla = arch in _MLA_ARCHS and bool(info.arch_key("attention.key_length_mla"))
    recurrent = arch in _RECURRENT_ARCHS
    hybrid = arch in _HYBRID_ARCHS
    kv_from_start = info.arch_key("attention.shared_kv_layers")
    layers = []
    for il in range(n_layer):
        is_recr = recurrent or (hybrid and heads_kv[il] == 0)
        has_kv = il < n_layer - n_nextn
        if kv_from_start is not None:
            has_kv = il < n_layer - int(kv_from_start)
        layers.append(LayerAttn(il, heads_kv[il], head_k, head_v, swa[il] if il < len(swa) else False, has_kv, is_recr))
    r, s = _recurrent_sizes(info, n_embd, n_head)
    tokens = info.get("tokenizer.ggml.tokens.count")
    n_vocab = int(info.arch_key("vocab_size", tokens or 0) or 0)
    return ModelShape(
        architecture=arch,
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        n_vocab=n_vocab,
        n_ctx_train=int(info.arch_key("context_length", 0) or 0),
        n_swa=n_swa,
        layers=tuple(layers),
        is_mla=is_mla,
        is_recurrent=recurrent,
        is_hybrid=hybrid,
        recurrent_r=r,
        recurrent_s=s,
        n_ff=max(_per_layer(info.arch_key("feed_forward_length"), n_layer, 0) or [0]),
    )


def _recurrent_sizes(info: GGUFInfo, n_embd: int, n_head: int) -> tuple[int, int]:
    """n_embd_r / n_embd_s from llama_hparams (llama-hparams.cpp)."""
    wkv = int(info.arch_key("wkv.head_size", 0) or 0)
    if wkv:
        shift = int(info.arch_key("token_shift_count", 2) or 2)
        return shift * n_embd, n_embd * wkv
    l_cache = int(info.arch_key("shortconv.l_cache", 0) or 0)
    if l_cache:
        return n_embd * (l_cache - 1), 0
    d_conv = int(info.arch_key("ssm.conv_kernel", 0) or 0)
    d_inner = int(info.arch_key("ssm.inner_size", 0) or 0)
    d_state = int(info.arch_key("ssm.state_size", 0) or 0)
    n_group = int(info.arch_key("ssm.group_count", 0) or 0)
    r = (d_conv - 1 if d_conv > 0 else 0) * (d_inner + 2 * n_group * d_state)
    return r, d_state * d_inner
