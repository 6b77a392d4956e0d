"""vLLM's memory, predicted before Start the way vLLM computes it at start.

On the CPU vLLM reserves ``VLLM_CPU_KVCACHE_SPACE`` up front; on a GPU its KV is what is left of
``--gpu-memory-utilization`` × total after weights, the profiling pass's activation peak, non-torch
memory and CUDA graphs. Weights are held in the serving dtype (bf16 unless ``--dtype`` says
otherwise): a GGUF is dequantized into the folder vLLM serves; an AWQ or GPTQ folder stays packed,
so its weights are the bytes on disk. The KV cache is in the model's dtype unless
``--kv-cache-dtype fp8``.
"""

from __future__ import annotations

from dataclasses import dataclass

from zoe_panel.engine.base import EngineSpec
from zoe_panel.models.fit import GIB, MIB, Estimate, KVCache, MemoryBudget, Pool
from zoe_panel.models.gguf_meta import GGUFInfo
from zoe_panel.models.hf_model import HfModel
from zoe_panel.models.shape import ModelShape, model_shape

# vLLM's own process before any KV: Python, torch, the compiled graphs and the engine core, on the
# CPU build (measured here with SmolLM2: RSS at READY less the weights and the KV space).
VLLM_RUNTIME_BYTES = int(2.75 * GIB)
VLLM_CPU_BLOCK = 128  # tokens per KV block of vLLM's CPU backend; its token count is whole blocks
VLLM_DTYPE_BYTES = 2  # bf16 weights and KV, the panel's default --dtype
DTYPE_WIDTH = {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2, "auto": 2}

VLLM_GPU_BLOCK = 16  # tokens per KV block on CUDA (vLLM's default --block-size)
VLLM_GPU_UTILIZATION = 0.9  # vLLM's default --gpu-memory-utilization
VLLM_BATCHED_TOKENS = 2048  # tokens of the profiling forward pass (vLLM V1's default max_num_batched_tokens)
VLLM_NON_TORCH_BYTES = int(0.5 * GIB)  # CUDA context and libraries, outside PyTorch's allocator
VLLM_GRAPHS_BYTES = int(0.5 * GIB)  # CUDA graphs ("Graph capturing finished ... took N GiB"); 0 when eager


def _flag_value(args: tuple[str, ...], flag: str) -> str | None:
    """The last value given for ``flag`` (vLLM's argparse keeps the last)."""
    value = None
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            value = args[i + 1]
        elif a.startswith(flag + "="):
            value = a.split("=", 1)[1]
    return value


def dtype_bytes(spec: EngineSpec) -> int:
    """Bytes per weight and KV element in the serving dtype (``--dtype float32`` doubles both)."""
    return DTYPE_WIDTH.get((_flag_value(spec.extra_args, "--dtype") or "bfloat16").lower(), VLLM_DTYPE_BYTES)


def kv_element_bytes(spec: EngineSpec) -> int:
    kv = (_flag_value(spec.extra_args, "--kv-cache-dtype") or "auto").lower()
    return 1 if kv.startswith("fp8") else dtype_bytes(spec)


def vllm_kv_bytes_per_token(shape: ModelShape, element_bytes: int = VLLM_DTYPE_BYTES) -> int:
    return sum(la.k_row + la.v_row for la in shape.kv_layers) * element_bytes


def vllm_kv_tokens(
    shape: ModelShape, space_bytes: int, block: int = VLLM_CPU_BLOCK, element_bytes: int = VLLM_DTYPE_BYTES
) -> int:
    """Tokens of KV vLLM fits in ``space_bytes``: whole blocks of ``block`` tokens."""
    per_token = max(1, vllm_kv_bytes_per_token(shape, element_bytes))
    return space_bytes // (per_token * block) * block


@dataclass(frozen=True)
class ServedModel:
    """What the estimate needs of a model, from a GGUF's header or a Hugging Face folder."""

    shape: ModelShape
    weights_bytes: int  # as vLLM holds them
    weights_note: str


def served_model(model: GGUFInfo | HfModel, spec: EngineSpec) -> ServedModel:
    width = dtype_bytes(spec)
    if isinstance(model, HfModel):
        if model.quantized:
            return ServedModel(
                model.shape,
                model.weights_bytes,
                f"weights {model.quant_method} {model.quant_bits}-bit, packed as on disk "
                f"({model.weights_bytes / GIB:.2f} GiB)",
            )
        return ServedModel(
            model.shape,
            model.parameter_count * width,
            f"weights: {model.parameter_count / 1e6:,.0f}M parameters at {width} bytes (the Hugging Face folder)",
        )
    return ServedModel(
        model_shape(model),
        model.parameter_count * width,
        f"weights at {width} bytes a parameter, dequantized from the GGUF (the Hugging Face folder vLLM serves)",
    )


@dataclass(frozen=True)
class VllmGpuPlan:
    """vLLM's KV budget on a GPU, as it computes it at start (gpu_worker: determine_available_memory):
    utilization × total − weights − activation peak − non-torch memory − CUDA graphs."""

    total_bytes: int
    utilization: float
    weights_bytes: int
    activation_bytes: int
    non_torch_bytes: int
    graphs_bytes: int
    free_bytes: int | None

    @property
    def requested_bytes(self) -> int:
        return int(self.total_bytes * self.utilization)

    @property
    def kv_bytes(self) -> int:
        held = self.weights_bytes + self.activation_bytes + self.non_torch_bytes + self.graphs_bytes
        return self.requested_bytes - held

    def start_refusal(self) -> str | None:
        """vLLM refuses to start when less is free than utilization × total (on a Jetson, "total" is
        the whole shared memory, of which the system and other programs already hold some)."""
        if self.free_bytes is not None and self.free_bytes < self.requested_bytes:
            fits = self.free_bytes / max(1, self.total_bytes)
            return (
                f"vLLM will refuse to start: it wants {self.utilization:.2f} × {self.total_bytes / GIB:.1f} GiB = "
                f"{self.requested_bytes / GIB:.1f} GiB but only {self.free_bytes / GIB:.1f} GiB is free; "
                f"set --gpu-memory-utilization {max(0.05, fits - 0.02):.2f} or lower"
            )
        return None


def vllm_gpu_plan(
    shape: ModelShape, weights_bytes: int, spec: EngineSpec, budget: MemoryBudget, element_bytes: int = 2
) -> VllmGpuPlan:
    util = float(_flag_value(spec.extra_args, "--gpu-memory-utilization") or VLLM_GPU_UTILIZATION)
    batched = int(_flag_value(spec.extra_args, "--max-num-batched-tokens") or VLLM_BATCHED_TOKENS)
    # the profiling pass: hidden states and MLP intermediates of the batched tokens, plus fp32
    # logits of one token per sequence; a model of the peak, compared with the log after start
    activation = batched * (4 * shape.n_embd + 2 * shape.n_ff) * element_bytes
    activation += max(1, spec.parallel) * shape.n_vocab * 4
    eager = "--enforce-eager" in spec.extra_args
    return VllmGpuPlan(
        total_bytes=budget.gpu_total_bytes or 0,
        utilization=util,
        weights_bytes=weights_bytes,
        activation_bytes=activation,
        non_torch_bytes=VLLM_NON_TORCH_BYTES,
        graphs_bytes=0 if eager else VLLM_GRAPHS_BYTES,
        free_bytes=budget.gpu_free_bytes if budget.kind == "discrete" else budget.host_available_bytes,
    )


def vllm_estimate(model: GGUFInfo | HfModel, spec: EngineSpec, budget: MemoryBudget) -> Estimate:
    """vLLM reserves its KV space up front (VLLM_CPU_KVCACHE_SPACE on the CPU; on a GPU what is left
    of utilization × total), holds the weights in the serving dtype and its runtime; nothing grows
    after READY but requests."""
    served = served_model(model, spec)
    shape = served.shape
    element = kv_element_bytes(spec)
    kv_type = {1: "fp8", 2: "bf16", 4: "f32"}.get(element, "bf16")
    if budget.kind in ("unified", "discrete") and budget.gpu_total_bytes:
        return _vllm_gpu_estimate(served, spec, budget, element, kv_type)
    space = spec.kv_space_mib * MIB
    tokens = vllm_kv_tokens(shape, space, VLLM_CPU_BLOCK, element)
    concurrency = tokens / max(1, spec.ctx)
    kv = KVCache("vLLM KV space", tokens, len(shape.kv_layers), 1, kv_type, kv_type, space // 2, space - space // 2)
    notes = [
        f"vLLM reserves {space / GIB:.1f} GiB of KV up front: {tokens:,} tokens, at most {concurrency:.2f} "
        f"requests of {spec.ctx:,} tokens at once",
        served.weights_note,
    ]
    if tokens < spec.ctx:
        notes.append(
            f"the KV space holds {tokens:,} tokens, less than one request of {spec.ctx:,}: vLLM refuses to start; "
            "raise the KV space or lower the context"
        )
    return Estimate(
        n_ctx=tokens,
        n_ctx_seq=spec.ctx,
        weights_bytes=served.weights_bytes,
        weights_gpu_bytes=0,
        kv=(kv,),
        recurrent_bytes=0,
        compute_bytes=0,
        output_bytes=0,
        overhead_bytes=VLLM_RUNTIME_BYTES,
        budget=budget,
        notes=tuple(notes),
        compute_committed=True,
        slots=max(1, spec.parallel),
    )


@dataclass(frozen=True, kw_only=True)
class VllmGpuEstimate(Estimate):
    """vLLM on a GPU holds utilization × total once started, whatever its parts. Two limits: that
    share must be free at start, and within it the KV must hold at least one request of the context."""

    plan: VllmGpuPlan
    min_kv_bytes: int

    def pools(self) -> list[Pool]:
        p = self.plan
        held = p.weights_bytes + p.activation_bytes + p.graphs_bytes + p.non_torch_bytes
        free = p.free_bytes if p.free_bytes is not None else self.budget.host_available_bytes
        return [
            Pool("vLLM's GPU share", held + self.min_kv_bytes, p.requested_bytes),
            Pool("GPU", p.requested_bytes, free),
        ]


def _vllm_gpu_estimate(
    served: ServedModel, spec: EngineSpec, budget: MemoryBudget, element: int, kv_type: str
) -> Estimate:
    shape = served.shape
    plan = vllm_gpu_plan(shape, served.weights_bytes, spec, budget, dtype_bytes(spec))
    space = max(0, plan.kv_bytes)
    tokens = vllm_kv_tokens(shape, space, VLLM_GPU_BLOCK, element)
    concurrency = tokens / max(1, spec.ctx)
    kv = KVCache("vLLM KV (GPU)", tokens, len(shape.kv_layers), 1, kv_type, kv_type, space // 2, space - space // 2)
    notes = [
        f"vLLM's KV on the GPU = {plan.utilization:.2f} × {plan.total_bytes / GIB:.1f} GiB − weights "
        f"{plan.weights_bytes / GIB:.2f} − activation peak {plan.activation_bytes / GIB:.2f} − non-torch "
        f"{plan.non_torch_bytes / GIB:.2f} − CUDA graphs {plan.graphs_bytes / GIB:.2f} "
        f"= {plan.kv_bytes / GIB:.2f} GiB: "
        f"{tokens:,} tokens, at most {concurrency:.2f} requests of {spec.ctx:,} tokens at once "
        "(compared with its 'Available KV cache memory' and 'KV cache size' lines after start)",
        served.weights_note,
    ]
    if plan.kv_bytes <= 0:
        notes.append(
            "no room for the KV cache: vLLM stops with 'No available memory for the cache blocks'; raise "
            "--gpu-memory-utilization, pass --enforce-eager (no CUDA graphs) or pick a smaller model"
        )
    elif tokens < spec.ctx:
        notes.append(
            f"the KV holds {tokens:,} tokens, less than one request of --max-model-len {spec.ctx:,}: vLLM refuses "
            "to start; lower the context or free memory"
        )
    refusal = plan.start_refusal()
    if refusal:
        notes.append(refusal)
    return VllmGpuEstimate(
        plan=plan,
        min_kv_bytes=spec.ctx * vllm_kv_bytes_per_token(shape, element),
        n_ctx=tokens,
        n_ctx_seq=spec.ctx,
        weights_bytes=plan.weights_bytes,
        weights_gpu_bytes=plan.weights_bytes,
        kv=(kv,),
        recurrent_bytes=0,
        compute_bytes=plan.activation_bytes + plan.graphs_bytes,
        output_bytes=0,
        overhead_bytes=plan.non_torch_bytes,
        budget=budget,
        notes=tuple(notes),
        compute_committed=True,
        slots=max(1, spec.parallel),
    )


def max_context_vllm(model: GGUFInfo | HfModel) -> int:
    """The longest request vLLM will accept: the model's trained context (its --max-model-len check)."""
    shape = model.shape if isinstance(model, HfModel) else model_shape(model)
    return shape.n_ctx_train or 4096
