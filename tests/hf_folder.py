"""Hugging Face model folders for tests, written by hand: a config.json and safetensors files whose
headers declare real tensors (data zero-filled), so readers see what a real checkpoint has."""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

WIDTH = {"BF16": 2, "F16": 2, "F32": 4, "I32": 4}


def write_safetensors(
    path: Path, tensors: dict[str, tuple[str, list[int]]], *, cut: int = 0, noise: bool = False
) -> int:
    """A safetensors file with ``tensors`` (name -> dtype, shape), zero-filled (``noise``: random
    bytes, so a changed byte changes the checksum); ``cut`` bytes short when asked."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        n = math.prod(shape) * WIDTH[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        if noise:
            f.write(os.urandom(offset - cut))
        f.truncate(8 + len(raw) + offset - cut)
    return offset


LLAMA_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 256,
    "max_position_embeddings": 2048,
    "torch_dtype": "bfloat16",
}


def llama_tensors(cfg: dict[str, object], dtype: str = "BF16") -> dict[str, tuple[str, list[int]]]:
    h, ff, v = int(cfg["hidden_size"]), int(cfg["intermediate_size"]), int(cfg["vocab_size"])  # type: ignore[call-overload]
    kv = h // int(cfg["num_attention_heads"]) * int(cfg["num_key_value_heads"])  # type: ignore[call-overload]
    out: dict[str, tuple[str, list[int]]] = {"model.embed_tokens.weight": (dtype, [v, h])}
    for i in range(int(cfg["num_hidden_layers"])):  # type: ignore[call-overload]
        p = f"model.layers.{i}."
        out |= {
            p + "self_attn.q_proj.weight": (dtype, [h, h]),
            p + "self_attn.k_proj.weight": (dtype, [kv, h]),
            p + "self_attn.v_proj.weight": (dtype, [kv, h]),
            p + "self_attn.o_proj.weight": (dtype, [h, h]),
            p + "mlp.gate_proj.weight": (dtype, [ff, h]),
            p + "mlp.up_proj.weight": (dtype, [ff, h]),
            p + "mlp.down_proj.weight": (dtype, [h, ff]),
        }
    return out


def make_folder(
    folder: Path, cfg: dict[str, object] | None = None, *, shards: int = 1, dtype: str = "BF16"
) -> dict[str, tuple[str, list[int]]]:
    """A complete folder: config, a tokenizer file, weights in ``shards`` files (with an index if > 1)."""
    cfg = cfg or LLAMA_CONFIG
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"type": "BPE"}}))
    tensors = llama_tensors(cfg, dtype)
    names = list(tensors)
    if shards == 1:
        write_safetensors(folder / "model.safetensors", tensors)
        return tensors
    weight_map = {}
    for k in range(shards):
        part = {n: tensors[n] for n in names[k::shards]}
        fname = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        write_safetensors(folder / fname, part)
        weight_map |= {n: fname for n in part}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return tensors
