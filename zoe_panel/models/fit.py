"""Predict an engine's memory before it starts. Pure functions of GGUF metadata and the spec.

KV cache: llama.cpp's own rules at 0c1e570 (src/llama-context.cpp, llama-kv-cache*.cpp),
exact to the byte and checked against the real engine by tests/integration/test_kv_matrix.py:

* ``n_ctx`` is padded up to a multiple of 256.
* unified KV (``-kvu``): one stream of ``n_ctx`` cells shared by all slots, so memory does not grow
  with ``--parallel``; split slots (``-no-kvu``): ``n_seq`` streams of ``pad(n_ctx / n_seq, 256)``.
* bytes per row = elements / block size × block bytes (ggml_row_size), per cache type.
* sliding-window layers get ``pad(min(n_ctx_seq, n_swa × (unified ? n_seq : 1) + n_ubatch), 256)``
  cells (or all of them with ``--swa-full``); the other layers get ``n_ctx_seq``.
* without flash attention V is stored transposed and every layer uses the widest V row.
* MLA models (DeepSeek-2/3 style) keep no V cache; recurrent layers keep f32 state that does not
  depend on the context (``max(1, n_seq)`` rows).

Compute buffer: an approximation fitted to llama.cpp's CPU buffers for SmolLM2 and Gemma-3
(within ~5 % for ubatch ≥ 512): the FFN working set ``ubatch × 4 × (3·n_ff + 4·n_embd)``, the
KQ masks of every cache (f16 with flash attention, f32 without), one row of logits, and without
flash attention the attention scores ``cells × ubatch × n_head × 4`` when they are larger than the
FFN set. GPU backends differ; measured runs calibrate the verdict (see History).

llama-cpp-python keeps the logits of every token in a batch (``ubatch × vocab × 4`` bytes), which
dominates its compute buffer for small models.

Runtime overhead: the CUDA context and runtime, ~600 MiB on a discrete GPU (REFERENCE.md §12),
less on Jetson where it lives in the same RAM; on the CPU ~24 MiB (the binary's pages and
malloc'd tables: llama-server's RSS for SmolLM2 at ctx 2048 was 171 MiB against 147 MiB of buffers).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any

from zoe_panel.engine import flavors
from zoe_panel.engine.base import EngineSpec
from zoe_panel.models.gguf_meta import GGUFInfo
from zoe_panel.models.shape import ModelShape, model_shape

MIB = 1024 * 1024
GIB = 1024 * MIB
# cache type -> (block elements, block bytes), from ggml-common.h
TYPE_BLOCKS: dict[str, tuple[int, int]] = {
    "f32": (1, 4),
    "f16": (1, 2),
    "bf16": (1, 2),
    "q8_0": (32, 34),
    "q5_1": (32, 24),
    "q5_0": (32, 22),
    "q4_1": (32, 20),
    "q4_0": (32, 18),
    "iq4_nl": (32, 18),
}
OVERHEAD = {"cpu": 24 * MIB, "unified": 320 * MIB, "discrete": 600 * MIB}


class Verdict(str, enum.Enum):
    """Will the engine fit? A string enum: its value is what pages and JSON show."""

    FITS = "fits"
    TIGHT = "tight"
    WONT_FIT = "will not fit"

    def __str__(self) -> str:
        return self.value


def pad(n: int, to: int = 256) -> int:
    return (n + to - 1) // to * to


def row_bytes(cache_type: str, elements: int) -> int:
    blck, size = TYPE_BLOCKS[cache_type]
    return elements // blck * size


@dataclass(frozen=True)
class KVCache:
    name: str  # "KV", "non-SWA", "SWA"
    cells: int  # per stream, as llama.cpp logs it
    layers: int
    streams: int
    type_k: str
    type_v: str
    k_bytes: int
    v_bytes: int

    @property
    def bytes(self) -> int:
        return self.k_bytes + self.v_bytes


@dataclass(frozen=True)
class MemoryBudget:
    """What the machine can give. ``unified``: one pool (Jetson); ``discrete``: GPU + host."""

    kind: str  # cpu | unified | discrete
    host_available_bytes: int
    gpu_free_bytes: int | None = None
    gpu_total_bytes: int | None = None
    note: str = ""
    # What the GPU already holds before this engine starts (Jetson NvMap / NVML used). On a
    # Jetson it is already inside "used", so it is shown, not subtracted a second time.
    gpu_held_bytes: int | None = None


@dataclass(frozen=True)
class Estimate:
    n_ctx: int
    n_ctx_seq: int
    weights_bytes: int
    weights_gpu_bytes: int
    kv: tuple[KVCache, ...]
    recurrent_bytes: int
    compute_bytes: int
    output_bytes: int
    overhead_bytes: int
    budget: MemoryBudget
    notes: tuple[str, ...] = ()
    calibration: dict[str, Any] = field(default_factory=dict)

    @property
    def kv_bytes(self) -> int:
        return sum(c.bytes for c in self.kv)

    @property
    def kv_cells(self) -> int:
        return max((c.cells for c in self.kv), default=0)

    @property
    def total_bytes(self) -> int:
        raw = (
            self.weights_bytes
            + self.kv_bytes
            + self.recurrent_bytes
            + self.compute_bytes
            + self.output_bytes
            + self.overhead_bytes
        )
        factor = float(self.calibration.get("factor", 1.0))
        return int(raw * factor)

    @property
    def gpu_bytes(self) -> int:
        """On a discrete GPU: what must fit in its memory (offloaded weights, KV, compute, context)."""
        if self.budget.kind != "discrete" or self.weights_gpu_bytes == 0:
            return 0
        return self.weights_gpu_bytes + self.kv_bytes + self.compute_bytes + self.overhead_bytes

    @property
    def available_bytes(self) -> int:
        b = self.budget
        if b.kind == "discrete" and b.gpu_free_bytes is not None and self.gpu_bytes:
            return b.gpu_free_bytes
        return b.host_available_bytes

    @property
    def need_bytes(self) -> int:
        return self.gpu_bytes if self.gpu_bytes else self.total_bytes

    @property
    def headroom_bytes(self) -> int:
        return self.available_bytes - self.need_bytes

    @property
    def verdict(self) -> Verdict:
        return verdict(self.need_bytes, self.available_bytes)

    def to_json(self) -> dict[str, Any]:
        return {
            "n_ctx": self.n_ctx,
            "n_ctx_seq": self.n_ctx_seq,
            "weights_bytes": self.weights_bytes,
            "weights_gpu_bytes": self.weights_gpu_bytes,
            "kv_bytes": self.kv_bytes,
            "kv_cells": self.kv_cells,
            "kv_caches": [c.__dict__ for c in self.kv],
            "recurrent_bytes": self.recurrent_bytes,
            "compute_bytes": self.compute_bytes,
            "output_bytes": self.output_bytes,
            "overhead_bytes": self.overhead_bytes,
            "total_bytes": self.total_bytes,
            "gpu_bytes": self.gpu_bytes,
            "available_bytes": self.available_bytes,
            "headroom_bytes": self.headroom_bytes,
            "memory_kind": self.budget.kind,
            "gpu_held_bytes": self.budget.gpu_held_bytes,
            "verdict": self.verdict.value,
            "notes": list(self.notes),
            "calibration": self.calibration,
        }


def verdict(need: int, available: int) -> Verdict:
    """fits: leaves ≥ max(512 MiB, 10 %) free; tight: fits with less; else will not fit."""
    headroom = available - need
    if headroom >= max(512 * MIB, available // 10):
        return Verdict.FITS
    return Verdict.TIGHT if headroom >= 0 else Verdict.WONT_FIT


# -- KV cache ------------------------------------------------------------------------------
def context_layout(spec: EngineSpec, n_ctx_train: int) -> tuple[int, int, int]:
    """(n_ctx, n_ctx_seq, n_stream) as llama_context computes them."""
    n_seq = flavors.get(spec.flavor).sequences(spec)
    n_ctx = pad(spec.ctx or n_ctx_train)
    if spec.kv_unified or n_seq == 1:
        return n_ctx, n_ctx, 1
    n_ctx_seq = pad(n_ctx // n_seq)
    return n_ctx_seq * n_seq, n_ctx_seq, n_seq


def kv_caches(shape: ModelShape, spec: EngineSpec) -> tuple[list[KVCache], int, int]:
    n_ctx, n_ctx_seq, n_stream = context_layout(spec, shape.n_ctx_train)
    n_seq = flavors.get(spec.flavor).sequences(spec)
    fa = spec.flash_attn != "off"
    layers = shape.kv_layers
    if not layers:
        return [], n_ctx, n_ctx_seq
    v_max = max(la.v_row for la in layers)

    def cache(name: str, group: list[Any], cells: int) -> KVCache:
        k = sum(row_bytes(spec.cache_type_k, la.k_row) for la in group) * cells * n_stream
        if shape.is_mla:
            v = 0
        else:
            v = sum(row_bytes(spec.cache_type_v, la.v_row if fa else v_max) for la in group) * cells * n_stream
        return KVCache(name, cells, len(group), n_stream, spec.cache_type_k, spec.cache_type_v, k, v)

    if not shape.uses_swa:
        return [cache("KV", layers, n_ctx_seq)], n_ctx, n_ctx_seq
    unified = spec.kv_unified or n_seq == 1
    swa_cells = (
        n_ctx_seq if spec.swa_full else pad(min(n_ctx_seq, shape.n_swa * (n_seq if unified else 1) + spec.ubatch))
    )
    full = [la for la in layers if not la.is_swa]
    swa = [la for la in layers if la.is_swa]
    out = []
    if full:
        out.append(cache("non-SWA", full, n_ctx_seq))
    if swa:
        out.append(cache("SWA", swa, swa_cells))
    return out, n_ctx, n_ctx_seq


def recurrent_bytes(shape: ModelShape, spec: EngineSpec) -> int:
    n_seq = flavors.get(spec.flavor).sequences(spec)
    layers = [la for la in shape.layers if la.is_recurrent]
    return len(layers) * (shape.recurrent_r + shape.recurrent_s) * 4 * n_seq


def compute_bytes(shape: ModelShape, spec: EngineSpec, caches: list[KVCache]) -> int:
    ub = spec.ubatch
    ffn = ub * 4 * (3 * shape.n_ff + 4 * shape.n_embd)
    fa = spec.flash_attn != "off"
    masks = sum(c.cells for c in caches) * ub * (2 if fa else 4)
    # llama-cpp-python keeps logits for every token of a batch: a ubatch × vocab f32 output
    work = shape.n_vocab * 4 * (ub if flavors.get(spec.flavor).keeps_all_logits else 1)
    if fa:
        return max(ffn, work) + masks + (0 if work > ffn else work)
    scores = max((c.cells for c in caches), default=0) * ub * 4 * max(1, shape.n_head)
    attn = ub * 4 * 6 * shape.n_embd + scores
    return max(ffn, attn, work) + masks + (0 if work > max(ffn, attn) else work)


def gpu_layers(shape: ModelShape, spec: EngineSpec, budget: MemoryBudget) -> int:
    if budget.kind == "cpu":
        return 0
    return min(spec.n_gpu_layers, shape.n_layer + 1)  # +1: the output layer counts as one


def estimate(
    info: GGUFInfo, spec: EngineSpec, budget: MemoryBudget, *, calibration: dict[str, Any] | None = None
) -> Estimate:
    shape = model_shape(info)
    caches, n_ctx, n_ctx_seq = kv_caches(shape, spec)
    n_seq = flavors.get(spec.flavor).sequences(spec)
    offloaded = gpu_layers(shape, spec, budget)
    per_layer = info.layer_tensor_bytes
    on_gpu = sum(per_layer[: min(offloaded, len(per_layer))])
    if offloaded > shape.n_layer:
        on_gpu += info.output_tensor_bytes or info.token_embd_bytes
    notes = []
    if spec.cache_type_v not in ("f16", "f32", "bf16"):
        notes.append(
            f"a quantized V cache ({spec.cache_type_v}) needs flash attention"
            + (
                ": it is off, so the engine will refuse to start"
                if spec.flash_attn == "off"
                else "; 'auto' turns it on where the backend supports it"
            )
        )
    if spec.ctx and spec.ctx > shape.n_ctx_train > 0:
        notes.append(f"context {spec.ctx} is beyond the model's trained {shape.n_ctx_train} tokens")
    if pad(spec.ctx or shape.n_ctx_train) != (spec.ctx or shape.n_ctx_train):
        notes.append(f"llama.cpp pads the context to a multiple of 256: {n_ctx} cells")
    if shape.uses_swa and not spec.swa_full:
        notes.append(f"sliding window of {shape.n_swa} tokens: SWA layers keep only a window of the context")
    return Estimate(
        n_ctx=n_ctx,
        n_ctx_seq=n_ctx_seq,
        weights_bytes=info.tensor_bytes,
        weights_gpu_bytes=on_gpu,
        kv=tuple(caches),
        recurrent_bytes=recurrent_bytes(shape, spec),
        compute_bytes=compute_bytes(shape, spec, caches),
        output_bytes=shape.n_vocab * 4 * n_seq,
        overhead_bytes=OVERHEAD[budget.kind],
        budget=budget,
        notes=tuple(notes),
        calibration=calibration or {},
    )


def max_context(
    info: GGUFInfo,
    spec: EngineSpec,
    budget: MemoryBudget,
    cache_type: str,
    *,
    calibration: dict[str, Any] | None = None,
) -> int:
    """The largest context (a multiple of 256, at most the trained length) whose verdict is not
    'will not fit' with this cache type for K and V; 0 if even 256 does not fit."""
    shape = model_shape(info)
    top = max(256, shape.n_ctx_train or 131072)
    fa = (
        spec.flash_attn
        if cache_type in ("f16", "f32", "bf16")
        else ("on" if spec.flash_attn == "off" else spec.flash_attn)
    )
    base = replace(spec, cache_type_k=cache_type, cache_type_v=cache_type, flash_attn=fa)

    def ok(ctx: int) -> bool:
        e = estimate(info, replace(base, ctx=ctx), budget, calibration=calibration)
        return e.verdict != Verdict.WONT_FIT

    lo, hi = 0, top // 256
    if ok(hi * 256):
        return hi * 256
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid * 256):
            lo = mid
        else:
            hi = mid - 1
    return lo * 256
