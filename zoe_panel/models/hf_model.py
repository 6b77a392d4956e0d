"""A Hugging Face model folder (what vLLM serves): its config, its weights as their headers say,
and the shape that sizes vLLM's KV cache, read without torch or transformers.

A folder lives in the library as ``<name>.hf``: downloaded from the Hub (``hf_download``) or made
by the panel from a library GGUF (``vllm_support.prepare``, beside the GGUF). Only safetensors
weights are accepted: pickled ``.bin`` weights run code when loaded.

safetensors layout: 8 bytes little-endian header length N, N bytes of JSON (name -> dtype, shape,
data_offsets), then the data. The header alone gives every tensor's size, so a truncated shard is
caught here, before vLLM spends minutes importing to fail on it.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoe_panel.engine.flavors.vllm import HF_SUFFIX
from zoe_panel.errors import InvalidModelError
from zoe_panel.models.shape import LayerAttn, ModelShape

SOURCE_FILE = ".zoe-source.json"  # where a downloaded folder came from (repo, revision, commit)
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors format's own limit
DTYPE_BYTES = {
    "F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2, "U16": 2,
    "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "I8": 1, "U8": 1, "BOOL": 1, "F4": 1, "F6_E2M3": 1, "F6_E3M2": 1,
}  # fmt: skip
PICKLED = (".bin", ".pt", ".pth", ".ckpt")


@dataclass(frozen=True)
class Safetensors:
    """One weights file as its header declares it."""

    path: Path
    tensors: int
    params: int
    data_bytes: int
    dtypes: tuple[str, ...]


@dataclass(frozen=True)
class HfModel:
    path: Path
    name: str  # the folder's stem: what the engine serves it as
    architecture: str  # architectures[0], else model_type
    model_type: str
    dtype: str  # what the checkpoint holds ("bfloat16", "float16", ...; "" = not said)
    quant_method: str  # quantization_config.quant_method ("awq", "gptq", ...; "" = not quantized)
    quant_bits: int
    weights: tuple[Safetensors, ...]
    shape: ModelShape
    source: dict[str, Any] = field(default_factory=dict)  # .zoe-source.json (downloads)
    warnings: tuple[str, ...] = ()

    @property
    def weights_bytes(self) -> int:
        return sum(w.data_bytes for w in self.weights)

    @property
    def parameter_count(self) -> int:
        return sum(w.params for w in self.weights)

    @property
    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())

    @property
    def quantized(self) -> bool:
        return bool(self.quant_method)


def is_hf_folder(path: str | Path) -> bool:
    p = Path(path)
    return p.name.endswith(HF_SUFFIX) and p.is_dir()


def read_safetensors_header(path: Path) -> Safetensors:
    """A weights file's header, checked against the file's size (InvalidModelError if not sound)."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise InvalidModelError(f"{path.name}: {size} bytes is too short for a safetensors file")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER_BYTES or n + 8 > size:
            raise InvalidModelError(
                f"{path.name}: not a safetensors file, or truncated (its header claims {n:,} bytes of {size:,})"
            )
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidModelError(f"{path.name}: the safetensors header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise InvalidModelError(f"{path.name}: the safetensors header is not a JSON object")
    params = 0
    end = 0
    dtypes: set[str] = set()
    tensors = 0
    for name, t in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (lo, hi) = str(t["dtype"]), [int(d) for d in t["shape"]], t["data_offsets"]
            lo, hi = int(lo), int(hi)
        except (KeyError, TypeError, ValueError):
            raise InvalidModelError(f"{path.name}: tensor {name[:80]!r} has no dtype, shape or offsets") from None
        if not 0 <= lo <= hi:
            raise InvalidModelError(f"{path.name}: tensor {name[:80]!r} has offsets {lo}..{hi}")
        numel = math.prod(shape)
        width = DTYPE_BYTES.get(dtype)
        if width is not None and dtype not in ("F4", "F6_E2M3", "F6_E3M2") and numel * width != hi - lo:
            raise InvalidModelError(
                f"{path.name}: tensor {name[:80]!r} declares {numel:,} {dtype} values but {hi - lo:,} bytes"
            )
        params += numel
        end = max(end, hi)
        dtypes.add(dtype)
        tensors += 1
    if 8 + n + end != size:
        raise InvalidModelError(
            f"{path.name}: truncated or corrupt: its tensors end at byte {8 + n + end:,} but the file has "
            f"{size:,} bytes; download it again"
        )
    return Safetensors(path, tensors, params, end, tuple(sorted(dtypes)))


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files vLLM loads: those the index names (all must be there), else every one."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            mapping = json.loads(index.read_text())["weight_map"]
            names = sorted({str(v) for v in mapping.values()})
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise InvalidModelError(f"{folder.name}: model.safetensors.index.json is not a weight map") from None
        if any("/" in n or "\\" in n or n.startswith(".") for n in names):
            raise InvalidModelError(f"{folder.name}: the weight map names files outside the folder")
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise InvalidModelError(
                f"{folder.name}: incomplete: {len(missing)} of {len(names)} weight shards are missing "
                f"({', '.join(missing[:3])}{'…' if len(missing) > 3 else ''}); download it again"
            )
        return [folder / n for n in names]
    files = sorted(p for p in folder.glob("*.safetensors") if p.is_file())
    if not files:
        pickled = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLED)
        if pickled:
            raise InvalidModelError(
                f"{folder.name}: only pickled PyTorch weights ({', '.join(pickled[:3])}): the panel serves "
                "safetensors only, since loading a pickle runs code; pick a repository with .safetensors"
            )
        raise InvalidModelError(f"{folder.name}: no weights (.safetensors) in the folder")
    return files


def text_config(config: dict[str, Any]) -> dict[str, Any]:
    """The language model's part of a config: multimodal configs (Gemma 3, LLaVA, ...) nest it."""
    inner = config.get("text_config")
    return {**config, **inner} if isinstance(inner, dict) else config


def _int(cfg: dict[str, Any], *keys: str, default: int | None = None) -> int:
    for k in keys:
        v = cfg.get(k)
        if isinstance(v, int | float) and not isinstance(v, bool):
            return int(v)
    if default is None:
        raise InvalidModelError(f"config.json has no {keys[0]}")
    return default


def hf_shape(config: dict[str, Any]) -> ModelShape:
    """The shape that sizes vLLM's KV cache, from config.json (transformers' names)."""
    cfg = text_config(config)
    n_layer = _int(cfg, "num_hidden_layers", "n_layer", "num_layers")
    n_embd = _int(cfg, "hidden_size", "n_embd", "d_model")
    n_head = _int(cfg, "num_attention_heads", "n_head")
    if n_layer <= 0 or n_embd <= 0 or n_head <= 0 or n_layer > 100_000:
        raise InvalidModelError(f"config.json: {n_layer} layers, width {n_embd}, {n_head} heads is not a model")
    n_kv = 1 if cfg.get("multi_query") else _int(cfg, "num_key_value_heads", "num_kv_heads", default=n_head)
    head = _int(cfg, "head_dim", default=n_embd // n_head)
    window = _int(cfg, "sliding_window", default=0) if cfg.get("use_sliding_window", True) else 0
    types = cfg.get("layer_types")
    swa = [t == "sliding_attention" for t in types] if isinstance(types, list) else [window > 0] * n_layer
    swa = (swa + [False] * n_layer)[:n_layer]
    mla_rank = _int(cfg, "kv_lora_rank", default=0)
    if mla_rank:  # MLA: one latent of kv_lora_rank + the rope part per token, no separate V
        rope = _int(cfg, "qk_rope_head_dim", default=0)
        layers = tuple(LayerAttn(i, 1, mla_rank + rope, 0, False, True, False) for i in range(n_layer))
    else:
        layers = tuple(LayerAttn(i, n_kv, head, head, swa[i] and window > 0, True, False) for i in range(n_layer))
    return ModelShape(
        architecture=str(cfg.get("model_type") or ""),
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        n_vocab=_int(cfg, "vocab_size", default=0),
        n_ctx_train=_int(cfg, "max_position_embeddings", "n_positions", "max_sequence_length", default=0),
        n_swa=window,
        layers=layers,
        is_mla=bool(mla_rank),
        is_recurrent=False,
        is_hybrid=False,
        recurrent_r=0,
        recurrent_s=0,
        n_ff=_int(cfg, "intermediate_size", "n_inner", "ffn_dim", default=4 * n_embd),
    )


def read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    if not path.is_file():
        raise InvalidModelError(f"{folder.name}: no config.json: not a Hugging Face model folder")
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidModelError(f"{folder.name}: config.json is not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise InvalidModelError(f"{folder.name}: config.json is not a JSON object")
    return config


def read_hf_model(folder: Path) -> HfModel:
    """The folder as vLLM will load it, or InvalidModelError saying what is wrong and what to do."""
    if not folder.is_dir():
        raise InvalidModelError(f"{folder.name}: not a folder")
    config = read_config(folder)
    archs = config.get("architectures")
    arch = str(archs[0]) if isinstance(archs, list) and archs else str(config.get("model_type") or "")
    if not arch:
        raise InvalidModelError(f"{folder.name}: config.json names no architecture (architectures, model_type)")
    shape = hf_shape(config)
    weights = tuple(read_safetensors_header(p) for p in weight_files(folder))
    qcfg = config.get("quantization_config") or text_config(config).get("quantization_config") or {}
    quant = str(qcfg.get("quant_method", "")).lower() if isinstance(qcfg, dict) else ""
    bits = int(qcfg.get("bits", qcfg.get("w_bit", 0)) or 0) if isinstance(qcfg, dict) else 0
    warnings = []
    if not (folder / "tokenizer.json").is_file() and not (folder / "tokenizer.model").is_file():
        warnings.append("no tokenizer.json or tokenizer.model: vLLM cannot tokenize without one")
    source: dict[str, Any] = {}
    try:
        loaded = json.loads((folder / SOURCE_FILE).read_text())
        source = loaded if isinstance(loaded, dict) else {}
    except (OSError, ValueError):
        pass
    dtype = str(config.get("torch_dtype") or config.get("dtype") or text_config(config).get("torch_dtype") or "")
    return HfModel(
        path=folder,
        name=folder.name.removesuffix(HF_SUFFIX),
        architecture=arch,
        model_type=str(config.get("model_type") or ""),
        dtype=dtype,
        quant_method=quant,
        quant_bits=bits,
        weights=weights,
        shape=shape,
        source=source,
        warnings=tuple(warnings),
    )


def describe(model: HfModel) -> dict[str, Any]:
    """A row for the library table."""
    return {
        "architecture": model.architecture,
        "parameters": model.parameter_count,
        "dtype": model.dtype or "?",
        "quantization": f"{model.quant_method} {model.quant_bits}-bit" if model.quant_method else "none",
        "layers": model.shape.n_layer,
        "context (trained)": model.shape.n_ctx_train,
        "weights bytes": model.weights_bytes,
        "source": model.source.get("repo", "") or "made here from a GGUF",
    }


def hf_needs_vllm(folder: Path) -> str:
    return (
        f"{folder.name} is a Hugging Face folder: only vLLM serves it; pick the vLLM flavour, or convert it to a "
        "GGUF for llama.cpp (Models page, Convert)"
    )
