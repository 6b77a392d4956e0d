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
# The CUDA context and runtime (REFERENCE.md §12): ~600 MiB on a discrete GPU, less on Jetson.
# The H200 sweep: NVML's per-process memory within 0.9 % of weights + KV + compute + 600 MiB.
GPU_CONTEXT = {"cpu": 0, "unified": 320 * MIB, "discrete": 600 * MIB}
# Host memory the CUDA driver and runtime take besides (anonymous pages: the H200's RSS minus the
# mapped model and the libraries' pages, ~180 MiB). On a Jetson it is inside the unified figure.
HOST_CUDA_RUNTIME = {"cpu": 0, "unified": 0, "discrete": 180 * MIB}
# llama-server's binary and shared libraries as resident pages: 12 MiB for a native CPU build,
# 15 MiB for the portable one (it maps every CPU variant's library). Replaced by what History
# measured for the same engine version when it has (the run's file-backed pages, model excluded).
BINARY_BYTES = 15 * MIB
# The engine's own tables (tokenizer, graph), fitted to llama-server's heap and anonymous pages at
# READY minus every buffer it reported, over SmolLM2's and Gemma-3's tokenizers and three synthetic
# vocabularies (+100k short tokens, +200k short, +100k 24-byte ones; residuals under 0.6 MiB):
# 175 bytes per token and 165 per BPE merge (the token strings, the token-to-id map, the piece
# cache, the merge ranks), four heap copies of every token longer than libstdc++'s 15 in-place
# bytes, ~77 KiB per layer and 2.9 MiB besides. SmolLM2: 21 MiB; Gemma-3: 50 MiB.
TABLE_BASE = int(2.9 * MIB)
TABLE_PER_TOKEN = 175
TABLE_PER_MERGE = 165
TABLE_LONG_TOKEN_COPIES = 4
TABLE_PER_LAYER = 77 * 1024
# What each slot allocates at its first request: the sampler's candidates over the vocabulary
# (id, logit, p: 12 bytes, kept twice) and the request's buffers (tokens, JSON, the HTTP thread's
# malloc arena). Measured growth beyond the buffers after one prompt: ~2 MiB (SmolLM2), ~9 (Gemma-3).
SLOT_BYTES_PER_TOKEN = 24
SLOT_BYTES = 1 * MIB
# Types llama.cpp's CPU backend repacks (ggml-cpu/repack.cpp), with the row multiple each needs.
REPACK_X86_AVX2 = {"Q4_0": 8, "Q4_K": 8, "IQ4_NL": 8, "MXFP4": 8}
REPACK_X86_AVX512 = {"Q2_K": 8}
REPACK_ARM_DOTPROD = {"Q4_0": 4, "Q4_K": 8, "Q5_K": 8, "Q6_K": 8, "IQ4_NL": 4, "MXFP4": 4, "Q8_0": 4}


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
    # Weight types the CPU backend repacks here (from the CPU's features; see repack_types)
    repack_types: tuple[str, ...] = ()
    host_total_bytes: int | None = None


@dataclass(frozen=True)
class Pool:
    """One memory pool the engine draws on, with what it needs there and what is free."""

    name: str  # "memory" (one pool), "GPU", "host"
    need_bytes: int
    available_bytes: int

    @property
    def headroom_bytes(self) -> int:
        return self.available_bytes - self.need_bytes

    @property
    def verdict(self) -> Verdict:
        return verdict(self.need_bytes, self.available_bytes)


@dataclass(frozen=True)
class Estimate:
    """The engine's memory, in two stages.

    At READY: weights (mapped from the file), their repacked copies, the KV cache, recurrent state,
    the compute buffer where it is committed at allocation (GPU memory), the output buffer, the
    engine's tables (tokenizer, graph) and the process itself (binary and libraries, the CUDA
    context).

    After READY, what grows while it serves: the prompt cache (up to ``--cache-ram``), the context
    checkpoints of SWA and recurrent models (``--ctx-checkpoints`` per slot), and on the CPU the
    compute buffer's pages, which malloc hands out untouched and the first long prompts fill.
    ``total_bytes`` is both stages: the verdict covers what the engine can reach, not only READY.
    """

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
    repack_bytes: int = 0
    tables_bytes: int = 0  # tokenizer and per-layer tables the engine builds at load
    compute_committed: bool = False  # a GPU compute buffer is committed when allocated
    prompt_cache_bytes: int = 0
    checkpoint_bytes: int = 0
    checkpoint_each_bytes: int = 0
    slots: int = 1
    gpu_context_bytes: int = 0  # the CUDA context and runtime, inside overhead_bytes
    serving_bytes: int = 0  # each slot's sampling candidates and request buffers, made by its first request
    compute_host_bytes: int = 0  # with a GPU: the graph's inputs in pinned host memory
    host_runtime_bytes: int = 0  # with a GPU: the CUDA driver's and runtime's host memory
    draft_bytes: int = 0  # speculative decoding's draft model: its weights, KV and compute
    draft_name: str = ""

    @property
    def kv_bytes(self) -> int:
        return sum(c.bytes for c in self.kv)

    @property
    def kv_cells(self) -> int:
        return max((c.cells for c in self.kv), default=0)

    @property
    def compute_at_ready_bytes(self) -> int:
        return self.compute_bytes if self.compute_committed else 0

    @property
    def working_set_bytes(self) -> int:
        """Compute-buffer pages first touched by prompts after READY (CPU buffers only)."""
        return self.compute_bytes - self.compute_at_ready_bytes

    @property
    def at_ready_bytes(self) -> int:
        raw = (
            self.weights_bytes
            + self.repack_bytes
            + self.kv_bytes
            + self.recurrent_bytes
            + self.compute_at_ready_bytes
            + self.compute_host_bytes
            + self.host_runtime_bytes
            + self.output_bytes
            + self.tables_bytes
            + self.overhead_bytes
            + self.draft_bytes
        )
        factor = float(self.calibration.get("factor", 1.0))
        return int(raw * factor)

    @property
    def after_load_bytes(self) -> int:
        return self.prompt_cache_bytes + self.checkpoint_bytes + self.working_set_bytes + self.serving_bytes

    @property
    def total_bytes(self) -> int:
        return self.at_ready_bytes + self.after_load_bytes

    @property
    def gpu_bytes(self) -> int:
        """On a discrete GPU: what must fit in its memory (offloaded weights, KV, compute, context)."""
        if self.budget.kind != "discrete" or self.weights_gpu_bytes == 0:
            return 0
        return self.weights_gpu_bytes + self.kv_bytes + self.compute_bytes + self.gpu_context_bytes

    @property
    def host_bytes(self) -> int:
        """What host RAM holds: everything on one pool; beside a discrete GPU, the rest."""
        return self.total_bytes - self.gpu_bytes

    def pools(self) -> list[Pool]:
        """Discrete GPU: the GPU's parts against its free memory (NVML), the host's parts against
        MemAvailable. CPU and unified memory (Jetson): one pool."""
        b = self.budget
        if self.gpu_bytes:
            gpu_free = b.gpu_free_bytes if b.gpu_free_bytes is not None else b.host_available_bytes
            return [
                Pool("GPU", self.gpu_bytes, gpu_free),
                Pool("host", self.host_bytes, b.host_available_bytes),
            ]
        return [Pool("memory", self.total_bytes, b.host_available_bytes)]

    def tightest(self) -> Pool:
        return min(self.pools(), key=lambda p: (p.headroom_bytes, p.name))

    @property
    def available_bytes(self) -> int:
        return self.tightest().available_bytes

    @property
    def need_bytes(self) -> int:
        return self.tightest().need_bytes

    @property
    def headroom_bytes(self) -> int:
        return self.tightest().headroom_bytes

    @property
    def verdict(self) -> Verdict:
        order = [Verdict.WONT_FIT, Verdict.TIGHT, Verdict.FITS]
        return min((p.verdict for p in self.pools()), key=order.index)

    def parts(self) -> list[tuple[str, str, int, str]]:
        """(stage, part, bytes, detail) rows, in the order the engine allocates them: what the
        Engine page and ``estimate`` show."""
        gib = f"{self.weights_gpu_bytes / MIB:.0f} MiB on the GPU" if self.weights_gpu_bytes else "mapped from the file"
        rows = [("at READY", "weights", self.weights_bytes, gib)]
        if self.repack_bytes:
            rows.append(("at READY", "repacked weights", self.repack_bytes, "the CPU's own layout, a second copy"))
        for c in self.kv:
            detail = f"{c.cells} cells × {c.layers} layers × {c.streams} stream(s), {c.type_k}/{c.type_v}"
            rows.append(("at READY", "KV cache" if c.name == "KV" else f"KV cache ({c.name})", c.bytes, detail))
        if self.recurrent_bytes:
            rows.append(("at READY", "recurrent state", self.recurrent_bytes, ""))
        if self.compute_at_ready_bytes:
            rows.append(("at READY", "compute buffer", self.compute_at_ready_bytes, "committed on the GPU"))
        if self.compute_host_bytes:
            rows.append(("at READY", "compute inputs (pinned host)", self.compute_host_bytes, "CUDA_Host buffer"))
        if self.host_runtime_bytes:
            rows.append(("at READY", "CUDA runtime (host)", self.host_runtime_bytes, "driver and runtime"))
        if self.draft_bytes:
            rows.append(("at READY", "draft model", self.draft_bytes, f"{self.draft_name}: weights, KV, compute"))
        rows.append(("at READY", "output buffer", self.output_bytes, "logits"))
        rows.append(("at READY", "tokenizer and tables", self.tables_bytes, ""))
        ctx = f", CUDA context {self.gpu_context_bytes / MIB:.0f} MiB" if self.gpu_context_bytes else ""
        rows.append(("at READY", "engine process", self.overhead_bytes, "binary and libraries" + ctx))
        if self.calibration.get("factor"):
            rows.append(("at READY", "calibration", self.at_ready_bytes - self._raw_at_ready, self.calibration["note"]))
        rows.append(("at READY", "= at READY", self.at_ready_bytes, ""))
        if self.working_set_bytes:
            rows.append(("after READY", "compute working set", self.working_set_bytes, "CPU pages long prompts touch"))
        if self.serving_bytes:
            rows.append(
                ("after READY", "slot buffers", self.serving_bytes, f"sampling and requests, {self.slots} slot(s)")
            )
        rows.append(
            (
                "after READY",
                "prompt cache (cap)",
                self.prompt_cache_bytes,
                "--cache-ram" if self.prompt_cache_bytes else "off",
            )
        )
        if self.checkpoint_bytes:
            rows.append(
                (
                    "after READY",
                    "context checkpoints (cap)",
                    self.checkpoint_bytes,
                    f"{self.checkpoint_bytes // max(1, self.checkpoint_each_bytes * self.slots)} per slot × "
                    f"{self.slots} slot(s) × {self.checkpoint_each_bytes / MIB:.1f} MiB",
                )
            )
        rows.append(("after READY", "= total", self.total_bytes, ""))
        for p in self.pools():
            rows.append(
                ("fit", f"{p.name} available", p.available_bytes, f"needs {p.need_bytes / MIB:.0f} MiB: {p.verdict}")
            )
        return rows

    @property
    def _raw_at_ready(self) -> int:
        return int(self.at_ready_bytes / float(self.calibration.get("factor", 1.0)))

    def to_json(self) -> dict[str, Any]:
        return {
            "n_ctx": self.n_ctx,
            "n_ctx_seq": self.n_ctx_seq,
            "weights_bytes": self.weights_bytes,
            "weights_gpu_bytes": self.weights_gpu_bytes,
            "repack_bytes": self.repack_bytes,
            "kv_bytes": self.kv_bytes,
            "kv_cells": self.kv_cells,
            "kv_caches": [c.__dict__ for c in self.kv],
            "recurrent_bytes": self.recurrent_bytes,
            "compute_bytes": self.compute_bytes,
            "compute_at_ready_bytes": self.compute_at_ready_bytes,
            "compute_host_bytes": self.compute_host_bytes,
            "host_runtime_bytes": self.host_runtime_bytes,
            "output_bytes": self.output_bytes,
            "tables_bytes": self.tables_bytes,
            "overhead_bytes": self.overhead_bytes,
            "at_ready_bytes": self.at_ready_bytes,
            "prompt_cache_bytes": self.prompt_cache_bytes,
            "checkpoint_bytes": self.checkpoint_bytes,
            "checkpoint_each_bytes": self.checkpoint_each_bytes,
            "working_set_bytes": self.working_set_bytes,
            "serving_bytes": self.serving_bytes,
            "draft_bytes": self.draft_bytes,
            "after_load_bytes": self.after_load_bytes,
            "total_bytes": self.total_bytes,
            "gpu_bytes": self.gpu_bytes,
            "host_bytes": self.host_bytes,
            "pools": [
                {
                    "name": p.name,
                    "need_bytes": p.need_bytes,
                    "available_bytes": p.available_bytes,
                    "verdict": p.verdict.value,
                }
                for p in self.pools()
            ],
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


def compute_bytes(shape: ModelShape, spec: EngineSpec, caches: list[KVCache], *, gpu: bool = False) -> int:
    ub = spec.ubatch
    fa = spec.flash_attn != "off"
    # The FFN working set: fitted to llama.cpp's CPU buffers (3·n_ff + 4·n_embd floats per token);
    # CUDA's graph keeps one activation fewer (3·n_ff + 3·n_embd: H200 sweep, within 1 %).
    ffn = ub * 4 * (3 * shape.n_ff + (3 if gpu else 4) * shape.n_embd)
    masks = sum(c.cells for c in caches) * ub * (2 if fa else 4)
    # llama-cpp-python keeps logits for every token of a batch: a ubatch × vocab f32 output
    work = shape.n_vocab * 4 * (ub if flavors.get(spec.flavor).keeps_all_logits else 1)
    if fa:
        return max(ffn, work) + masks + (0 if work > ffn else work)
    scores = max((c.cells for c in caches), default=0) * ub * 4 * max(1, shape.n_head)
    attn = ub * 4 * 6 * shape.n_embd + scores
    return max(ffn, attn, work) + masks + (0 if work > max(ffn, attn) else work)


def compute_host_bytes(shape: ModelShape, spec: EngineSpec, caches: list[KVCache]) -> int:
    """With a GPU, the graph's inputs live in pinned host memory (llama.cpp's "CUDA_Host compute
    buffer"): the embeddings' rows and the KQ mask, f16 with flash attention, f32 without. From
    the H200 sweep: ub × (8·n_embd + 2·cells) bytes, and ub × (9·n_embd + 4·cells) without FA."""
    cells = sum(c.cells for c in caches)
    if spec.flash_attn != "off":
        return spec.ubatch * (8 * shape.n_embd + 2 * cells)
    return spec.ubatch * (9 * shape.n_embd + 4 * cells)


def gpu_layers(shape: ModelShape, spec: EngineSpec, budget: MemoryBudget) -> int:
    if budget.kind == "cpu":
        return 0
    return min(spec.n_gpu_layers, shape.n_layer + 1)  # +1: the output layer counts as one


def repack_types(machine: str, flags: frozenset[str]) -> tuple[str, ...]:
    """Weight types the CPU backend repacks on this CPU, as ``TYPE:rows`` (rows: the multiple
    ne[1] must be). From /proc/cpuinfo's flags; the engine's CPU variant has the same features."""
    table: dict[str, int] = {}
    if machine in ("x86_64", "amd64", "AMD64"):
        if "avx2" in flags:
            table.update(REPACK_X86_AVX2)
        if "avx512f" in flags:
            table.update(REPACK_X86_AVX512)
    elif machine in ("aarch64", "arm64") and "asimddp" in flags:
        table.update(REPACK_ARM_DOTPROD)
    return tuple(f"{k}:{v}" for k, v in sorted(table.items()))


def repack_bytes(info: GGUFInfo, types: tuple[str, ...], cpu_share: float) -> int:
    """The repacked copies of the CPU's weight matrices (llama.cpp logs them as CPU_REPACK)."""
    total = 0
    for item in types:
        name, _, rows = item.partition(":")
        got = info.matrix_bytes.get(name)
        if got:
            total += got[0] if rows == "8" else got[1]
    return int(total * cpu_share)


def tables_bytes(info: GGUFInfo, n_layer: int) -> int:
    tokens = int(info.get("tokenizer.ggml.tokens.count") or 0)
    merges = int(info.get("tokenizer.ggml.merges.count") or 0)
    long_heap = int(info.get("tokenizer.ggml.tokens.heap") or 0)
    return (
        TABLE_BASE
        + TABLE_PER_TOKEN * tokens
        + TABLE_PER_MERGE * merges
        + TABLE_LONG_TOKEN_COPIES * long_heap
        + TABLE_PER_LAYER * n_layer
    )


def checkpoint_size(shape: ModelShape, spec: EngineSpec, caches: list[KVCache]) -> int:
    """One context checkpoint of one slot: the state llama-server cannot roll back, i.e. the
    sequence's sliding-window cache (at most the window plus a ubatch of cells) or its recurrent
    state. 0 for models that need none (full attention, or --swa-full)."""
    size = 0
    swa = [c for c in caches if c.name == "SWA"]
    if swa and not spec.swa_full:
        c = swa[0]
        per_cell = c.bytes // max(1, c.cells * c.streams)
        size += per_cell * min(c.cells, shape.n_swa + spec.ubatch)
    recurrent = [la for la in shape.layers if la.is_recurrent]
    size += len(recurrent) * (shape.recurrent_r + shape.recurrent_s) * 4
    return size


def estimate(
    info: GGUFInfo,
    spec: EngineSpec,
    budget: MemoryBudget,
    *,
    calibration: dict[str, Any] | None = None,
    binary_bytes: int | None = None,
    draft: GGUFInfo | None = None,
) -> Estimate:
    shape = model_shape(info)
    flavor = flavors.get(spec.flavor)
    caches, n_ctx, n_ctx_seq = kv_caches(shape, spec)
    n_seq = flavor.sequences(spec)
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
    cpu_share = 1.0 - min(offloaded, shape.n_layer) / max(1, shape.n_layer)
    context = GPU_CONTEXT[budget.kind] if offloaded else 0
    grows = flavor.grows_after_load
    each = checkpoint_size(shape, spec, caches) if grows else 0
    checkpoints = each * spec.ctx_checkpoints * n_seq
    if checkpoints:
        notes.append(
            f"context checkpoints: up to {spec.ctx_checkpoints} per slot × {n_seq} slot(s) of "
            f"{each / MIB:.1f} MiB each ({checkpoints / MIB:.0f} MiB) after READY"
        )
    return Estimate(
        n_ctx=n_ctx,
        n_ctx_seq=n_ctx_seq,
        weights_bytes=info.tensor_bytes,
        weights_gpu_bytes=on_gpu,
        kv=tuple(caches),
        recurrent_bytes=recurrent_bytes(shape, spec),
        compute_bytes=compute_bytes(shape, spec, caches, gpu=offloaded > 0),
        compute_host_bytes=compute_host_bytes(shape, spec, caches) if offloaded else 0,
        host_runtime_bytes=HOST_CUDA_RUNTIME[budget.kind] if offloaded else 0,
        output_bytes=shape.n_vocab * 4 * n_seq,
        overhead_bytes=(binary_bytes or BINARY_BYTES) + context,
        budget=budget,
        notes=tuple(notes),
        calibration=calibration or {},
        repack_bytes=repack_bytes(info, budget.repack_types, cpu_share) if cpu_share > 0 else 0,
        tables_bytes=tables_bytes(info, shape.n_layer),
        compute_committed=offloaded > 0,
        prompt_cache_bytes=spec.cache_ram_mib * MIB if grows else 0,
        checkpoint_bytes=checkpoints,
        checkpoint_each_bytes=each,
        slots=n_seq,
        gpu_context_bytes=context,
        serving_bytes=n_seq * (shape.n_vocab * SLOT_BYTES_PER_TOKEN + SLOT_BYTES),
        draft_bytes=draft_bytes(draft, spec, budget) if draft is not None else 0,
        draft_name=draft.path.rsplit("/", 1)[-1] if draft is not None else "",
    )


def draft_bytes(draft: GGUFInfo, spec: EngineSpec, budget: MemoryBudget) -> int:
    """The draft model beside the target: its weights, its own KV cache at the target's context
    (llama-server sizes the draft context like the target's) and its compute buffer."""
    d = estimate(draft, replace(spec, model=draft.path, draft_model="", spec_type="", cache_ram_mib=0), budget)
    return d.weights_bytes + d.repack_bytes + d.kv_bytes + d.recurrent_bytes + d.compute_bytes + d.output_bytes


def check_draft(target: GGUFInfo, draft: GGUFInfo) -> None:
    """llama.cpp drafts only with a vocabulary it can map token for token: the same tokenizer,
    the same special tokens, sizes within 128 (its own rule). Say which differs."""
    from zoe_panel.errors import ConfigError

    a, b = model_shape(target), model_shape(draft)
    name = draft.path.rsplit("/", 1)[-1]
    problems = []
    ta, tb = target.get("tokenizer.ggml.model"), draft.get("tokenizer.ggml.model")
    if ta != tb:
        problems.append(f"tokenizer {tb!r} vs the target's {ta!r}")
    if abs(a.n_vocab - b.n_vocab) > 128:
        problems.append(f"vocabulary of {b.n_vocab} tokens vs the target's {a.n_vocab}")
    for key in ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"):
        if target.get(key) != draft.get(key):
            problems.append(f"{key.rsplit('.', 1)[-1]} {draft.get(key)} vs {target.get(key)}")
    if problems:
        raise ConfigError(
            f"{name} cannot draft for this model: " + "; ".join(problems) + ". Pick a smaller model of the same family."
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
    'will not fit' with this cache type for K and V; 0 if even 256 does not fit. Without the prompt
    cache: the panel sizes it from what is left, so it never limits the context."""
    shape = model_shape(info)
    top = max(256, shape.n_ctx_train or 131072)
    fa = (
        spec.flash_attn
        if cache_type in ("f16", "f32", "bf16")
        else ("on" if spec.flash_attn == "off" else spec.flash_attn)
    )
    base = replace(spec, cache_type_k=cache_type, cache_type_v=cache_type, flash_attn=fa, cache_ram_mib=0)

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
