"""Engine log line -> LoadEvent. Pure: one line in, an event or None out.

Covers the current llama-server wording (0c1e570, -lv 4), the Aug-2025 wording
(``llama_kv_cache_unified``, ``main: server is listening``), the early-2025 wording of the
``dustynv/llama_cpp:r36.4.0`` image (``llama_kv_cache_init``, ``KV self size``,
``llama_new_context_with_model``), ``--log-jsonl`` lines, and llama-cpp-python's output
(the same llama.cpp lines, then uvicorn). Failures are events too, each with a ``kind`` the
diagnosis turns into advice.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

MIB = 1024 * 1024
# Leading noise: "0.00.152.389 I " (timestamps, -lv 4), "I " (--log-prefix), "llama-server | " (compose).
_PREFIX_RE = re.compile(r"^(?:[\w.-]+\s+\|\s+)?(?:\d+\.\d{2}\.\d{3}\.\d{3}\s+)?(?:[IWEDT]\s+)?")
_NUM = r"([\d.]+)"


@dataclass(frozen=True)
class LoadEvent:
    t: float
    phase: str  # model_buffer, kv_buffer, kv_cache, kv_layout, recurrent, compute_buffer, output_buffer,
    #            fit_projection, loaded, listening, gpu_info, failure
    text: str
    bytes: int | None = None
    device: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def is_failure(self) -> bool:
        return self.phase == "failure"

    def label(self) -> str:
        size = f" {self.bytes / MIB:.1f} MiB" if self.bytes is not None else ""
        dev = f" ({self.device})" if self.device else ""
        names = {
            "model_buffer": "weights",
            "kv_cache": "KV cache",
            "kv_buffer": "KV buffer",
            "recurrent": "recurrent state",
            "compute_buffer": "compute",
            "output_buffer": "output",
            "loaded": "model loaded",
            "listening": "listening",
            "fit_projection": "llama.cpp projection",
        }
        if self.phase == "kv_cache" and self.detail.get("cache"):
            return f"KV {self.detail['cache']}{size}"
        if self.is_failure:
            return f"FAILED: {self.detail.get('kind', 'error')}"
        return f"{names.get(self.phase, self.phase)}{size}{dev}"

    def to_json(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "phase": self.phase,
            "text": self.text,
            "bytes": self.bytes,
            "device": self.device,
            "detail": self.detail,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LoadEvent:
        return cls(d["t"], d["phase"], d["text"], d.get("bytes"), d.get("device", ""), d.get("detail") or {})


def _mib(x: str) -> int:
    return round(float(x) * MIB)


Extractor = Callable[[re.Match[str]], tuple[int | None, str, dict[str, Any]]]

# Order matters: the first pattern that matches wins.
_PATTERNS: list[tuple[str, re.Pattern[str], Extractor]] = [
    (
        "kv_cache",
        re.compile(
            rf"(?:kv_cache|KV self).*?size\s*=\s*{_NUM} MiB \(\s*(\d+) cells,\s*(\d+) layers,\s*(\d+)/(\d+) seqs\),"
            rf"\s*K \((\w+)\):\s*{_NUM} MiB,\s*V \((\w+)\):\s*{_NUM} MiB"
        ),
        lambda m: (
            _mib(m[1]),
            "",
            {
                "cells": int(m[2]),
                "layers": int(m[3]),
                "seqs": int(m[4]),
                "streams": int(m[5]),
                "type_k": m[6],
                "k_bytes": _mib(m[7]),
                "type_v": m[8],
                "v_bytes": _mib(m[9]),
            },
        ),
    ),
    (
        "kv_cache",
        re.compile(  # Jul-2025 builds: no seqs column
            rf"kv_cache\w*: size\s*=\s*{_NUM} MiB \(\s*(\d+) cells,\s*(\d+) layers[^)]*\),"
            rf"\s*K \((\w+)\):\s*{_NUM} MiB,\s*V \((\w+)\):\s*{_NUM} MiB"
        ),
        lambda m: (
            _mib(m[1]),
            "",
            {
                "cells": int(m[2]),
                "layers": int(m[3]),
                "type_k": m[4],
                "k_bytes": _mib(m[5]),
                "type_v": m[6],
                "v_bytes": _mib(m[7]),
            },
        ),
    ),
    (
        "kv_cache",
        re.compile(  # early 2025 (r36.4.0 image): "KV self size  =  448.00 MiB, K (f16): ..."
            rf"KV self size\s*=\s*{_NUM} MiB,\s*K \((\w+)\):\s*{_NUM} MiB,\s*V \((\w+)\):\s*{_NUM} MiB"
        ),
        lambda m: (_mib(m[1]), "", {"type_k": m[2], "k_bytes": _mib(m[3]), "type_v": m[4], "v_bytes": _mib(m[5])}),
    ),
    (
        "kv_layout",
        re.compile(r"creating\s+(non-SWA|SWA) KV cache, size = (\d+) cells"),
        lambda m: (None, "", {"cache": m[1], "cells": int(m[2])}),
    ),
    (
        "recurrent",
        re.compile(rf"memory_recurrent: size\s*=\s*{_NUM} MiB \(\s*(\d+) cells,\s*(\d+) layers"),
        lambda m: (_mib(m[1]), "", {"cells": int(m[2]), "layers": int(m[3])}),
    ),
    ("kv_buffer", re.compile(rf"(\S+) KV buffer size\s*=\s*{_NUM} MiB"), lambda m: (_mib(m[2]), m[1], {})),
    ("recurrent_buffer", re.compile(rf"(\S+) RS buffer size\s*=\s*{_NUM} MiB"), lambda m: (_mib(m[2]), m[1], {})),
    ("model_buffer", re.compile(rf"(\S+) model buffer size\s*=\s*{_NUM} MiB"), lambda m: (_mib(m[2]), m[1], {})),
    ("compute_buffer", re.compile(rf"(\S+) compute buffer size\s*=\s*{_NUM} MiB"), lambda m: (_mib(m[2]), m[1], {})),
    ("output_buffer", re.compile(rf"(\S+)\s+output buffer size\s*=\s*{_NUM} MiB"), lambda m: (_mib(m[2]), m[1], {})),
    (
        "fit_projection",
        re.compile(r"projected to use (\d+) MiB of (\S+) memory"),
        lambda m: (int(m[1]) * MIB, m[2], {}),
    ),
    (
        "offload",
        re.compile(r"offloaded (\d+)/(\d+) layers to GPU"),
        lambda m: (None, "", {"offloaded": int(m[1]), "layers": int(m[2])}),
    ),
    (
        "gpu_info",
        re.compile(r"Device (\d+): (.+?), compute capability ([\d.]+), VMM: (\w+)"),
        lambda m: (None, f"CUDA{m[1]}", {"name": m[2], "cc": m[3], "vmm": m[4] == "yes"}),
    ),
    # vLLM (CPU and GPU wordings), for its load view and the KV comparison
    (
        "kv_space",
        re.compile(r"Explicitly set \(([\d.]+)/([\d.]+)\) GiB for KV cache"),
        lambda m: (int(float(m[1]) * 2**30), "CPU", {"of_gib": float(m[2])}),
    ),
    (
        "kv_space",
        re.compile(r"Available KV cache memory: ([\d.]+) GiB"),
        lambda m: (int(float(m[1]) * 2**30), "GPU", {}),
    ),
    (
        "kv_tokens",
        re.compile(
            r"KV cache size: ([\d,]+) tokens(?:, Maximum concurrency for ([\d,]+) tokens per request: ([\d.]+)x)?"
        ),
        lambda m: (
            None,
            "",
            {
                "tokens": int(m[1].replace(",", "")),
                **({"per_request": int(m[2].replace(",", "")), "concurrency": float(m[3])} if m[2] else {}),
            },
        ),
    ),
    (
        # vLLM's V0 engine (the older Jetson images): blocks of 16 tokens (its default --block-size)
        "kv_tokens",
        re.compile(r"# (?:GPU|cuda) blocks: ([\d,]+)"),
        lambda m: (None, "GPU", {"tokens": int(m[1].replace(",", "")) * 16, "blocks": int(m[1].replace(",", ""))}),
    ),
    ("weights_loaded", re.compile(r"Loading weights took ([\d.]+) seconds"), lambda m: (None, "", {"s": float(m[1])})),
    (
        "weights_loaded",
        re.compile(r"Model loading took ([\d.]+) GiB"),
        lambda m: (int(float(m[1]) * 2**30), "", {}),
    ),
    ("compile", re.compile(r"torch\.compile takes ([\d.]+) s"), lambda m: (None, "", {"s": float(m[1])})),
    ("compile", re.compile(r"Graph capturing finished in ([\d.]+) secs"), lambda m: (None, "", {"s": float(m[1])})),
    ("engine_init", re.compile(r"Initializing a V1 LLM engine|Starting vLLM API server"), lambda m: (None, "", {})),
    ("loaded", re.compile(r"Application startup complete"), lambda m: (None, "", {})),
    ("warning", re.compile(r"no usable GPU found"), lambda m: (None, "", {"kind": "no_gpu"})),
    ("loaded", re.compile(r"(?:llama_server|main): model loaded"), lambda m: (None, "", {})),
    ("listening", re.compile(r"(?:listening on|Uvicorn running on) (\S+)"), lambda m: (None, "", {"url": m[1]})),
]

# (kind, pattern): failures, most specific first.
_FAILURES: list[tuple[str, re.Pattern[str]]] = [
    # llama.cpp's RPC client (ggml-rpc.cpp): it aborts on the first worker that fails it
    ("rpc_mismatch", re.compile(r"RPC server version mismatch: (\S+)")),
    ("rpc_connect", re.compile(r"Failed to connect to (\S+)|RPC handshake failed for (\S+)")),
    ("rpc_lost", re.compile(r"Remote RPC server crashed or returned malformed response")),
    (
        "cuda_driver",
        re.compile(
            r"CUDA driver version is insufficient|forward compatibility was attempted|"
            r"cudaErrorInsufficientDriver|no CUDA-capable device is detected",
            re.I,
        ),
    ),
    # vLLM on a Jetson (the seed's failures) and on the CPU
    ("cuda_allocator", re.compile(r"NVML_SUCCESS == r INTERNAL ASSERT FAILED|CUDACachingAllocator\.cpp")),
    ("alloc_conf", re.compile(r"Unrecognized allocator option|Unrecognized CachingAllocator option")),
    ("vllm_kv_space", re.compile(r"on kv cache allocation is less than requested memory for kv \(([\d.]+) GiB\)")),
    ("vllm_cpu_util", re.compile(r"on startup is less than desired CPU memory utilization")),
    ("vmm", re.compile(r"cuMemAddressReserve|cuMemCreate|cuMemMap|VMM pool.*fail", re.I)),
    ("nvmap", re.compile(r"NvMap\w*.*(?:fail|error|err)|NvRmMem|nvmap.*(?:fail|error)", re.I)),
    (
        "oom",
        re.compile(
            r"out of memory|cudaMalloc failed|failed to allocate|unable to allocate|"
            r"std::bad_alloc|ErrorOutOfDeviceMemory|cannot allocate memory",
            re.I,
        ),
    ),
    ("unknown_arch", re.compile(r"unknown model architecture: '([^']+)'")),
    ("bind", re.compile(r"couldn't bind HTTP server socket|address already in use", re.I)),
    (
        "load",
        re.compile(
            r"error loading model|failed to load model|exiting due to model loading error|"
            r"Failed to load model from file",
            re.I,
        ),
    ),
]


def parse_line(t: float, line: str) -> LoadEvent | None:
    """One engine log line (already stripped of ANSI codes) -> event or None."""
    text = line.strip()
    if text.startswith("{") and '"msg"' in text:
        t, text = _unjsonl(t, text)
    text = _PREFIX_RE.sub("", text, count=1)
    if not text:
        return None
    for phase, rx, extract in _PATTERNS:
        m = rx.search(text)
        if m:
            nbytes, device, detail = extract(m)
            return LoadEvent(t, phase, text, nbytes, device, detail)
    for kind, rx in _FAILURES:
        m = rx.search(text)
        if m:
            info: dict[str, Any] = {"kind": kind}
            if kind == "unknown_arch":
                info["architecture"] = m[1]
            elif kind == "rpc_mismatch":
                info["version"] = m[1]
            elif kind == "rpc_connect":
                info["endpoint"] = (m[1] or m[2]).rstrip(".:")
            size = re.search(r"(?:allocating|size of|buffer of size)\s+([\d.]+)\s*(MiB)?", text)
            nbytes = None
            if size:
                nbytes = _mib(size[1]) if size[2] else int(float(size[1]))
            return LoadEvent(t, "failure", text, nbytes, "", info)
    return None


def _unjsonl(t: float, text: str) -> tuple[float, str]:
    try:
        obj = json.loads(text)
    except ValueError:
        return t, text
    msg = str(obj.get("msg", "")).rstrip("\n")
    return t, msg


def parse_lines(lines: Iterable[tuple[float, str]]) -> list[LoadEvent]:
    """Events of a whole log, with each KV cache tagged SWA / non-SWA from the line before it."""
    out: list[LoadEvent] = []
    pending_cache: str | None = None
    for t, line in lines:
        ev = parse_line(t, line)
        if ev is None:
            continue
        if ev.phase == "kv_layout":
            pending_cache = ev.detail["cache"]
        elif ev.phase == "kv_cache" and pending_cache:
            ev = LoadEvent(ev.t, ev.phase, ev.text, ev.bytes, ev.device, {**ev.detail, "cache": pending_cache})
            pending_cache = None
        out.append(ev)
    return out


def failures(events: Iterable[LoadEvent]) -> list[LoadEvent]:
    return [e for e in events if e.is_failure]


def load_summary(events: list[LoadEvent]) -> dict[str, int]:
    """Bytes by phase as llama.cpp reported them (summed over devices)."""
    out: dict[str, int] = {}
    for e in events:
        if e.bytes is not None and e.phase in (
            "model_buffer",
            "kv_cache",
            "compute_buffer",
            "output_buffer",
            "recurrent",
        ):
            out[e.phase] = out.get(e.phase, 0) + e.bytes
    return out


# The load's phases in the order llama.cpp goes through them, with the words the operator reads.
PHASE_ORDER = ("model_buffer", "kv_cache", "recurrent", "compute_buffer", "loaded", "listening")
PHASE_WORDS = {
    "": "before the weights",
    "model_buffer": "weights",
    "kv_cache": "KV cache",
    "recurrent": "recurrent state",
    "compute_buffer": "compute buffer",
    "loaded": "warm-up",
    "listening": "listening",
}


def load_progress(events: list[LoadEvent], predicted_at_ready: int | None) -> dict[str, Any]:
    """How far a failed load got: the last phase it completed, what llama.cpp had reported
    allocating by then, and that as a share of the predicted READY memory. A failed load's peak is
    not an estimate error (a KV OOM stops after the weights: "-98.7 %"), so History shows this."""
    last = ""
    for e in events:
        if e.phase in PHASE_ORDER and (not last or PHASE_ORDER.index(e.phase) >= PHASE_ORDER.index(last)):
            last = e.phase
    reported = sum(load_summary(events).values())
    failure = next((e for e in events if e.is_failure), None)
    failed_at = _next_phase(last)
    out: dict[str, Any] = {
        "completed": PHASE_WORDS[last],
        "failed_at": PHASE_WORDS.get(failed_at, failed_at),
        "reported_bytes": reported,
        "predicted_at_ready_bytes": predicted_at_ready,
        "share": round(reported / predicted_at_ready, 3) if predicted_at_ready else None,
    }
    if failure is not None:
        out["failure"] = failure.detail.get("kind", "error")
        if failure.bytes:
            out["requested_bytes"] = failure.bytes
    return out


def _next_phase(last: str) -> str:
    if not last:
        return "model_buffer"
    i = PHASE_ORDER.index(last)
    return PHASE_ORDER[i + 1] if i + 1 < len(PHASE_ORDER) else "after listening"


def progress_text(progress: dict[str, Any]) -> str:
    """One line for History: 'failed at the KV cache, after the weights (57 % of READY)'."""
    if not progress:
        return ""
    share = progress.get("share")
    pct = f" ({share * 100:.0f} % of the predicted READY memory allocated)" if share is not None else ""
    if progress.get("completed") == PHASE_WORDS[""]:
        return f"failed before the weights were allocated{pct}"
    return f"failed at the {progress['failed_at']}, after the {progress['completed']}{pct}"
