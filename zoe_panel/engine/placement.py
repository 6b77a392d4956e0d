"""Where the weights really went, when that differs from what the spec asked for. Pure."""

from __future__ import annotations

from collections.abc import Sequence

from zoe_panel.engine.base import EngineSpec
from zoe_panel.engine.loadlog import LoadEvent


def _host_buffer(device: str) -> bool:
    return device.upper().startswith("CPU") or device.upper() == "AMX"


def placement_note(spec: EngineSpec, events: Sequence[LoadEvent]) -> str | None:
    """For a loaded engine: where the weights really went, when that differs from what was asked.

    A CPU-only llama-server accepts ``-ngl 999`` and silently keeps everything in RAM; on a discrete
    GPU box that is the difference between 600 and 30 tokens/s, so say it out loud.
    """
    buffers = [e for e in events if e.phase == "model_buffer"]
    if spec.n_gpu_layers <= 0 or not buffers:
        return None
    offload = [e for e in events if e.phase == "offload"]
    on_gpu = offload[-1].detail.get("offloaded", 0) if offload else 0
    # A runtime-dispatch build says "offloaded 31/31 layers to GPU" with no GPU at all: the weights'
    # buffers tell where they really are (CPU, CPU_Mapped, CPU_REPACK, AMX are all system RAM).
    if on_gpu == 0 or all(_host_buffer(e.device) for e in buffers):
        why = (
            "it found no usable GPU"
            if any(e.phase == "warning" and e.detail.get("kind") == "no_gpu" for e in events)
            else "this llama-server has no GPU backend (a CPU build)"
        )
        return (
            f"GPU layers {spec.n_gpu_layers} were asked for, but the model runs on the CPU: {why}. "
            "Everything is in system RAM."
        )
    total = offload[-1].detail.get("layers", 0)
    if total and on_gpu < total and spec.n_gpu_layers >= total:
        return f"Only {on_gpu}/{total} layers went to the GPU; the rest run on the CPU."
    return None
