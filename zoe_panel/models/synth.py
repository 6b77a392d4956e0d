"""Synthetic GGUF models: random weights, a real tokenizer, any shape.

They let tests and benchmarks cover shapes no small download has (GQA ratios, head sizes, layer
counts, per-layer KV heads, sliding-window patterns) and let a GPU machine with no internet run
a model of real size. The tokenizer (tokens, merges, template) is copied from a real GGUF, so
llama.cpp loads and runs them like any model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

TOKENIZER_KEYS = (
    "tokenizer.ggml.model",
    "tokenizer.ggml.pre",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.merges",
    "tokenizer.ggml.scores",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.padding_token_id",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.chat_template",
)


# "deci" has llama's tensors but reads KV heads per layer (Nemotron-NAS), so per-layer shapes use it.
LLAMA_LIKE = ("llama", "deci")


@dataclass(frozen=True)
class SynthShape:
    arch: str = "llama"  # "llama" (dense, GQA), "deci" (per-layer KV heads), "gemma3" (sliding window)
    n_layer: int = 4
    n_embd: int = 128
    n_head: int = 4
    n_head_kv: int | tuple[int, ...] = 2
    head_dim: int | None = None  # key/value length; None = n_embd / n_head
    n_ff: int = 256
    n_ctx_train: int = 8192
    sliding_window: int = 0
    swa_pattern: int | None = None  # gemma3: every N-th layer is global (llama.cpp default 6)
    dtype: str = "f16"
    name: str = "synthetic"
    extra: dict[str, Any] = field(default_factory=dict)

    def heads_kv(self) -> list[int]:
        if isinstance(self.n_head_kv, int):
            return [self.n_head_kv] * self.n_layer
        return list(self.n_head_kv)

    @property
    def head(self) -> int:
        return self.head_dim or self.n_embd // self.n_head


def read_tokenizer(path: Path) -> dict[str, Any]:
    """Tokenizer fields of a real GGUF, as plain Python values."""
    from gguf import GGUFReader

    r = GGUFReader(str(path))
    out: dict[str, Any] = {}
    for key in TOKENIZER_KEYS:
        f = r.fields.get(key)
        if f is not None:
            out[key] = (f.contents(), f.types)
    return out


def extend_vocab(tok: dict[str, Any], extra: int) -> dict[str, Any]:
    """The tokenizer with ``extra`` more (normal) tokens: a vocabulary of another size, for
    measuring what the engine's tables cost per entry outside the two real tokenizers."""
    from gguf import GGUFValueType

    out = dict(tok)
    tokens, types = tok["tokenizer.ggml.tokens"]
    out["tokenizer.ggml.tokens"] = ([*tokens, *(f"<zoe_extra_{i}>" for i in range(extra))], types)
    if "tokenizer.ggml.token_type" in tok:
        values, t = tok["tokenizer.ggml.token_type"]
        out["tokenizer.ggml.token_type"] = ([*values, *([1] * extra)], t)
    if "tokenizer.ggml.scores" in tok:
        values, t = tok["tokenizer.ggml.scores"]
        out["tokenizer.ggml.scores"] = ([*values, *([0.0] * extra)], t)
    assert GGUFValueType.ARRAY in types
    return out


def _add_tokenizer(w: Any, tok: dict[str, Any]) -> int:
    from gguf import GGUFValueType

    n_vocab = 0
    for key, (value, types) in tok.items():
        if types[0] == GGUFValueType.ARRAY:
            if key == "tokenizer.ggml.tokens":
                n_vocab = len(value)
            w.add_array(key, value)
        elif types[0] == GGUFValueType.STRING:
            w.add_string(key, value)
        elif types[0] == GGUFValueType.BOOL:
            w.add_bool(key, bool(value))
        else:
            w.add_uint32(key, int(value))
    return n_vocab


def _write_metadata(w: Any, shape: SynthShape, tokenizer: dict[str, Any], file_type: int) -> int:
    a = shape.arch
    w.add_name(shape.name)
    w.add_uint32("general.file_type", file_type)
    w.add_uint32(f"{a}.block_count", shape.n_layer)
    w.add_uint32(f"{a}.context_length", shape.n_ctx_train)
    w.add_uint32(f"{a}.embedding_length", shape.n_embd)
    w.add_uint32(f"{a}.feed_forward_length", shape.n_ff)
    w.add_uint32(f"{a}.attention.head_count", shape.n_head)
    kv = shape.heads_kv()
    if len(set(kv)) == 1:
        w.add_uint32(f"{a}.attention.head_count_kv", kv[0])
    else:
        w.add_array(f"{a}.attention.head_count_kv", kv)
    w.add_float32(f"{a}.attention.layer_norm_rms_epsilon", 1e-6)
    w.add_float32(f"{a}.rope.freq_base", 10000.0)
    if shape.head_dim is not None or a == "gemma3":
        w.add_uint32(f"{a}.attention.key_length", shape.head)
        w.add_uint32(f"{a}.attention.value_length", shape.head)
    if a in LLAMA_LIKE:
        w.add_uint32(f"{a}.rope.dimension_count", shape.head)
    if shape.sliding_window:
        w.add_uint32(f"{a}.attention.sliding_window", shape.sliding_window)
        if shape.swa_pattern is not None:
            w.add_uint32(f"{a}.attention.sliding_window_pattern", shape.swa_pattern)
    for key, value in shape.extra.items():
        w.add_uint32(key, int(value)) if isinstance(value, int) else w.add_string(key, str(value))
    n_vocab = _add_tokenizer(w, tokenizer)
    if a in LLAMA_LIKE:
        w.add_uint32(f"{a}.vocab_size", n_vocab)
    return n_vocab


def tensor_shapes(shape: SynthShape, n_vocab: int) -> list[tuple[str, tuple[int, ...]]]:
    """Every tensor of the model with its dimensions (rows first, as numpy has them)."""
    kv = shape.heads_kv()
    out: list[tuple[str, tuple[int, ...]]] = [
        ("token_embd.weight", (n_vocab, shape.n_embd)),
        ("output_norm.weight", (shape.n_embd,)),
    ]
    for il in range(shape.n_layer):
        p = f"blk.{il}."
        out += [
            (p + "attn_norm.weight", (shape.n_embd,)),
            (p + "attn_q.weight", (shape.n_head * shape.head, shape.n_embd)),
            (p + "attn_k.weight", (kv[il] * shape.head, shape.n_embd)),
            (p + "attn_v.weight", (kv[il] * shape.head, shape.n_embd)),
            (p + "attn_output.weight", (shape.n_embd, shape.n_head * shape.head)),
            (p + "ffn_norm.weight", (shape.n_embd,)),
            (p + "ffn_gate.weight", (shape.n_ff, shape.n_embd)),
            (p + "ffn_up.weight", (shape.n_ff, shape.n_embd)),
            (p + "ffn_down.weight", (shape.n_embd, shape.n_ff)),
        ]
        if shape.arch == "gemma3":
            out += [
                (p + "attn_q_norm.weight", (shape.head,)),
                (p + "attn_k_norm.weight", (shape.head,)),
                (p + "post_attention_norm.weight", (shape.n_embd,)),
                (p + "post_ffw_norm.weight", (shape.n_embd,)),
            ]
    return out


def write_synthetic(path: Path, shape: SynthShape, tokenizer: dict[str, Any], *, seed: int = 0) -> Path:
    """Write a loadable GGUF atomically (a .part file renamed when complete)."""
    from gguf import GGUFWriter

    rng = np.random.default_rng(seed)
    dtype = np.float16 if shape.dtype == "f16" else np.float32
    tmp = path.with_name(path.name + ".part")
    w = GGUFWriter(str(tmp), shape.arch)
    n_vocab = _write_metadata(w, shape, tokenizer, 1 if shape.dtype == "f16" else 0)
    for name, dims in tensor_shapes(shape, n_vocab):
        norm = len(dims) == 1
        data = np.ones(dims, dtype=np.float32) if norm else rng.normal(0, 0.02, dims).astype(np.float32)
        w.add_tensor(name, data if norm else data.astype(dtype))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, path)
    return path


def write_header_only(path: Path, shape: SynthShape, tokenizer: dict[str, Any], *, quant: str = "Q4_K") -> Path:
    """A GGUF of a model's full size whose tensor data is a hole: a real header (metadata, token
    list, tensor table) for reading remotely, with no weights on disk (a sparse file). Not loadable."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFWriter

    qtype = GGMLQuantizationType[quant]
    block, type_size = GGML_QUANT_SIZES[qtype]
    tmp = path.with_name(path.name + ".part")
    w = GGUFWriter(str(tmp), shape.arch)
    n_vocab = _write_metadata(w, shape, tokenizer, 15 if quant == "Q4_K" else 0)
    total = 0
    for name, dims in tensor_shapes(shape, n_vocab):
        if len(dims) == 1 or dims[-1] % block:
            nbytes = int(np.prod(dims)) * 4
            w.add_tensor_info(name, dims, np.dtype(np.float32), nbytes)
        else:
            row = dims[-1] // block * type_size
            nbytes = dims[0] * row
            w.add_tensor_info(name, (dims[0], row), np.dtype(np.uint8), nbytes, raw_dtype=qtype)
        total += nbytes + (-nbytes) % 32
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    with tmp.open("r+b") as f:
        f.seek(0, os.SEEK_END)
        start = f.tell() + (-f.tell()) % 32
        f.truncate(start + total)
    os.replace(tmp, path)
    return path
