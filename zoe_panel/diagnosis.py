"""Why did the engine fail, and what exactly should the operator change?

Inputs are what the panel already has: the failed status (exit code), the load events parsed from
the log, and the memory estimate for the same spec, which turns "out of memory" into numbers
("KV needs 2.1 GiB, 1.4 GiB available: lower ctx to 8192 or use q8_0").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from zoe_panel.engine import flavors
from zoe_panel.engine.base import EngineSpec, EngineStatus
from zoe_panel.engine.exits import SIGILL_EXIT
from zoe_panel.engine.loadlog import MIB, LoadEvent
from zoe_panel.engine.oomcheck import OomEvidence
from zoe_panel.models.fit import Estimate
from zoe_panel.workers.probe import PROTO_MAJOR, PROTO_MINOR, Probe


@dataclass(frozen=True)
class Diagnosis:
    kind: str
    title: str
    detail: str = ""
    fixes: tuple[str, ...] = field(default_factory=tuple)

    def text(self) -> str:
        lines = [self.title]
        if self.detail:
            lines.append(self.detail)
        lines += [f"- {f}" for f in self.fixes]
        return "\n".join(lines)


def _gib(n: int | float) -> str:
    return f"{n / 1024**3:.2f} GiB" if abs(n) >= 1024**3 else f"{n / MIB:.0f} MiB"


MaxCtx = Callable[[str], int]


def memory_fixes(spec: EngineSpec, est: Estimate | None, max_ctx: MaxCtx | None) -> list[str]:
    """Concrete changes that make the estimate fit, largest effect first."""
    fixes: list[str] = []
    if est is not None:
        short = -est.headroom_bytes
        if short > 0:
            fixes.append(f"free {_gib(short)} (close other programs) or pick a smaller model or quantization")
    if max_ctx is not None:
        cur = spec.cache_type_k
        best_here = max_ctx(cur)
        if 0 < best_here < spec.ctx:
            fixes.append(f"lower the context to {best_here} tokens ({cur} KV cache)")
        for ct in ("q8_0", "q4_0"):
            if ct != cur:
                n = max_ctx(ct)
                if n >= max(spec.ctx, 256):
                    fixes.append(f"use a {ct} KV cache: context {spec.ctx} then fits (up to {n})")
                    break
    if spec.n_gpu_layers > 0 and est is not None and est.budget.kind == "discrete":
        fixes.append("offload fewer layers to the GPU (GPU layers), keeping the rest in host RAM")
    if spec.parallel > 1 and not spec.kv_unified:
        fixes.append(f"use a unified KV cache (-kvu): {spec.parallel} split slots each need their own share")
    if not fixes:
        fixes.append("lower the context size or use a q8_0 KV cache")
    return fixes


def diagnose(
    status: EngineStatus,
    events: Sequence[LoadEvent],
    *,
    estimate: Estimate | None = None,
    max_ctx: MaxCtx | None = None,
    engine_version: str = "",
    oom: OomEvidence | None = None,
    workers: Sequence[Probe] = (),
) -> Diagnosis | None:
    """``workers``: the spec's RPC workers probed now, to name the node that went away."""
    spec = status.spec
    fails = [e for e in events if e.is_failure]
    kinds = [e.detail.get("kind") for e in fails]
    offload = [e for e in events if e.phase == "offload"]
    no_gpu = any(e.phase == "warning" and e.detail.get("kind") == "no_gpu" for e in events)
    if spec is None:
        return None

    def first(kind: str) -> LoadEvent:
        return fails[kinds.index(kind)]

    if spec.rpc and any(str(k).startswith("rpc_") for k in kinds):
        return rpc_failure(spec, events, workers)
    vllm = vllm_failure(spec, fails, kinds)
    if vllm is not None:
        return vllm
    if "cuda_driver" in kinds:
        return Diagnosis(
            "cuda_driver",
            "The engine's CUDA runtime does not match this machine's driver.",
            first("cuda_driver").text,
            (
                "pick an engine image built for this L4T / driver (python -m zoe_panel jetson-check lists the match)",
                "or build llama-server on the board itself: make llama-server",
            ),
        )
    if "vmm" in kinds:
        return Diagnosis(
            "vmm",
            "CUDA virtual memory (VMM) reservation failed.",
            first("vmm").text,
            ("rebuild llama-server with -DGGML_CUDA_NO_VMM=ON (make llama-server on a Jetson does this)",),
        )
    if "unknown_arch" in kinds:
        arch = first("unknown_arch").detail.get("architecture", "?")
        ver = f" (build {engine_version})" if engine_version else ""
        return Diagnosis(
            "unknown_arch",
            f"This engine{ver} cannot load the '{arch}' architecture: it is older than the model.",
            "",
            ("use a newer llama.cpp: a newer image tag, or the native llama-server this panel builds",),
        )
    killed = status.exit_code == 137 and "oom" not in kinds and "nvmap" not in kinds
    if killed and (oom is None or not oom.is_oom):
        seen = f" ({oom.text()})" if oom is not None and oom.text() else ""
        return Diagnosis(
            "killed",
            "The engine was killed with SIGKILL, and not for lack of memory: there is no record of an "
            f"out-of-memory kill and memory was not low{seen}.",
            "Something else sent the signal: a user (kill -9), a script, or a service manager.",
            ("check what stops processes on this machine, then start the engine again",),
        )
    if "oom" in kinds or "nvmap" in kinds or status.exit_code == 137:
        ev = first("oom") if "oom" in kinds else (first("nvmap") if "nvmap" in kinds else None)
        where = _oom_phase(events)
        size = f" while allocating {_gib(ev.bytes)}" if ev is not None and ev.bytes else ""
        title = f"Out of memory{where}{size}."
        if ev is None:
            title = f"The engine was killed by the kernel's OOM killer ({oom.text() if oom else 'SIGKILL'})."
        detail = ""
        if estimate is not None:
            detail = (
                f"Predicted need {_gib(estimate.need_bytes)} (weights {_gib(estimate.weights_bytes)}, "
                f"KV {_gib(estimate.kv_bytes)}, compute {_gib(estimate.compute_bytes)}); "
                f"available {_gib(estimate.available_bytes)}."
            )
        return Diagnosis("oom", title, detail, tuple(memory_fixes(spec, estimate, max_ctx)))
    if (no_gpu or (offload and offload[-1].detail.get("offloaded") == 0)) and spec.n_gpu_layers > 0 and fails:
        return Diagnosis(
            "no_gpu",
            "GPU layers were asked for but the engine loaded none on a GPU.",
            "",
            ("this llama-server was built without CUDA: rebuild on a machine with nvcc (make llama-server)",),
        )
    if "bind" in kinds:
        return Diagnosis(
            "bind", f"Port {spec.port} is taken.", first("bind").text, ("choose another port (Engine page → Advanced)",)
        )
    if "load" in kinds:
        return Diagnosis(
            "load",
            "The model failed to load.",
            fails[0].text,
            (
                "verify the file on the Models page (a truncated download loads like this)",
                "check the engine version supports this model",
            ),
        )
    if status.exit_code == SIGILL_EXIT:
        return illegal_instruction(spec, status.backend, engine_version)
    if status.exit_code not in (None, 0):
        return Diagnosis("exit", f"The engine exited ({status.reason}).", "", ("read the last log lines below",))
    return None


def vllm_failure(spec: EngineSpec, fails: Sequence[LoadEvent], kinds: list[Any]) -> Diagnosis | None:
    """vLLM's failures at KV allocation: the ones that ended the project's first attempt on a Jetson
    (PyTorch's caching allocator on unified memory), and those of its CPU build."""
    kv = f"{spec.kv_space_mib / 1024:.1f} GiB"
    if "cuda_allocator" in kinds:
        return Diagnosis(
            "cuda_allocator",
            "PyTorch's CUDA caching allocator asserted while vLLM allocated its KV cache "
            "(NVML_SUCCESS == r, CUDACachingAllocator.cpp).",
            "On a Jetson the GPU shares the system's memory: the allocator asks NVML about memory NVML cannot "
            "report there, and vLLM sizes its KV cache as a share of the whole board.",
            (
                "ask vLLM for less: a lower --gpu-memory-utilization (0.5 on a 16 GB board) and a shorter "
                "--max-model-len, so its KV fits beside everything else",
                "PYTORCH_NO_CUDA_MEMORY_CACHING=1 avoids the assert; what does not fit then fails as a plain "
                "out-of-memory instead",
                "or serve the model with llama.cpp (llama-server here): it allocates its KV once, at the size "
                "the estimate shows before Start",
            ),
        )
    if "alloc_conf" in kinds:
        return Diagnosis(
            "alloc_conf",
            "PYTORCH_CUDA_ALLOC_CONF holds an option this PyTorch does not know.",
            next((e.text for e in fails if e.detail.get("kind") == "alloc_conf"), ""),
            ("remove the option (or the variable): each PyTorch release accepts its own keys",),
        )
    if "vllm_kv_space" in kinds:
        return Diagnosis(
            "vllm_kv_space",
            f"vLLM could not reserve its KV cache space ({kv}): less memory is available.",
            next((e.text for e in fails if e.detail.get("kind") == "vllm_kv_space"), ""),
            ("lower the KV space (Engine page, vLLM KV space; kv_space_mib) to what the estimate says fits",),
        )
    if "oom" in kinds and flavors.get(spec.flavor).memory_model == "vllm":
        return Diagnosis(
            "oom",
            "vLLM ran out of memory allocating its KV cache.",
            next((e.text for e in fails if e.detail.get("kind") == "oom"), ""),
            (
                f"reserve less KV ({kv} now): a lower KV space, or on a GPU a lower --gpu-memory-utilization",
                "a shorter context (--max-model-len) and fewer sequences at once (--max-num-seqs)",
                "or serve the model with llama.cpp here: its KV is sized exactly before Start",
            ),
        )
    if "vllm_cpu_util" in kinds:
        return Diagnosis(
            "vllm_cpu_util",
            "vLLM's CPU build checked memory against a share of all RAM and refused to start.",
            "Without VLLM_CPU_KVCACHE_SPACE it treats --gpu-memory-utilization as a share of system memory.",
            ("set VLLM_CPU_KVCACHE_SPACE (GiB); the panel always does, so this engine was started elsewhere",),
        )
    return None


def rpc_failure(spec: EngineSpec, events: Sequence[LoadEvent], workers: Sequence[Probe]) -> Diagnosis:
    """An RPC worker failed the engine: name the node, say when (load or serving) and what to do."""
    fails = [e for e in events if e.is_failure]
    kinds = [e.detail.get("kind") for e in fails]
    served = any(e.phase in ("loaded", "listening") for e in events)
    down = [p for p in workers if not p.ok]
    worker_cmd = "python -m zoe_panel rpc-worker start (on that machine; --host ADDR --allow-remote off loopback)"
    if "rpc_mismatch" in kinds:
        ev = fails[kinds.index("rpc_mismatch")]
        ep = next((e.detail.get("endpoint") for e in fails if e.detail.get("kind") == "rpc_connect"), None)
        ep = ep or next((p.endpoint for p in workers if p.state == "mismatch"), "?")
        return Diagnosis(
            "rpc_mismatch",
            f"RPC worker {ep} speaks protocol {ev.detail.get('version', '?')}; this engine speaks "
            f"{PROTO_MAJOR}.{PROTO_MINOR}.x.",
            "Every worker's rpc-server must come from the same llama.cpp as the engine's llama-server.",
            (f"rebuild rpc-server on {ep} from this panel's llama.cpp (make llama-server builds both)",),
        )
    lost_while = "while serving" if served else "during the load"
    if "rpc_connect" in kinds:
        ep = fails[kinds.index("rpc_connect")].detail.get("endpoint", "?")
        earlier = (
            f" It had stopped answering {lost_while}; the restart policy tried again and could not reach it."
            if "rpc_lost" in kinds
            else ""
        )
        probe = next((p for p in workers if p.endpoint == ep), None)
        return Diagnosis(
            "rpc_unreachable",
            f"The engine could not reach RPC worker {ep}.{earlier}",
            probe.message() if probe is not None else "",
            (
                f"start the worker on {ep.rsplit(':', 1)[0]}: {worker_cmd}",
                "or remove it from the RPC workers and start again (its layers go to the other nodes)",
            ),
        )
    names = ", ".join(p.endpoint for p in down)
    if down:
        title = f"RPC worker {names} stopped answering {lost_while}; the engine aborted."
        detail = "; ".join(p.message() for p in down)
    else:
        title = f"An RPC worker dropped the connection {lost_while}; the engine aborted."
        detail = "Every worker answers now: a network drop, or a worker restarted under the engine."
    return Diagnosis(
        "rpc_lost",
        title,
        detail,
        (
            f"restart the worker ({worker_cmd}), then start the engine again",
            "or remove that worker and start again: the split is planned again over the others",
            "keep workers on a wired, trusted network: a dropped link ends the engine",
        ),
    )


def illegal_instruction(spec: EngineSpec, backend: str, engine_version: str = "") -> Diagnosis:
    """Exit 132 (SIGILL): the binary was compiled for instructions this CPU lists but cannot run
    (VMs that list AMX and trap it, or a binary built on another machine)."""
    build = f" ({engine_version})" if engine_version else ""
    if backend == "docker":
        fixes: tuple[str, ...] = (
            "the image's engine was compiled for another CPU: use an image built for this board, "
            "or build one here from the native build (scripts/build_engine_image.py)",
        )
    else:
        fixes = flavors.get(spec.flavor).safe_rebuild
    return Diagnosis(
        "sigill",
        f"The engine binary{build} uses CPU instructions this machine cannot run (SIGILL, exit code 132).",
        "It was compiled for features this CPU lists but traps (AMX in some VMs), or on another machine.",
        fixes,
    )


def _oom_phase(events: Sequence[LoadEvent]) -> str:
    """Which allocation failed: the last phase reached before the failure."""
    seen = [e.phase for e in events if not e.is_failure]
    text = " ".join(e.text for e in events if e.is_failure).lower()
    if "kv cache" in text or "kv_cache" in text:
        return " allocating the KV cache"
    if "compute" in text:
        return " allocating the compute buffers"
    if "kv_cache" in seen:
        return " after the KV cache (compute buffers)"
    if "model_buffer" in seen:
        return " allocating the KV cache"
    return " loading the weights"
