"""Engine contract: what to run (EngineSpec), what it is doing (EngineStatus), and the Protocol.

State transitions (derived from the world on every read, never remembered)::

                 start()                 /health 200
    STOPPED ───────────────> STARTING ───────────────> READY
       ^                        │                        │  probe fails while the
       │ stop()                 │ process exits          │  process lives
       │                        v                        v
       └──────────────────── FAILED <──── exits ──── UNHEALTHY
                                 (exit code, last log lines, diagnosis)

``stop()`` from any state leads to STOPPED. A supervisor with a restart policy may take
FAILED back to STARTING by itself.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from zoe_panel.engine import defaults, flavors
from zoe_panel.errors import ConfigError

CACHE_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")
FLASH_ATTN = ("auto", "on", "off")


class EngineState(str, enum.Enum):
    STOPPED = "STOPPED"
    STARTING = "STARTING"
    READY = "READY"
    FAILED = "FAILED"
    UNHEALTHY = "UNHEALTHY"

    @property
    def is_running(self) -> bool:
        return self in (EngineState.STARTING, EngineState.READY, EngineState.UNHEALTHY)


@dataclass(frozen=True)
class EngineSpec:
    """How to run the server. ``model`` is an absolute path on the host."""

    model: str
    ctx: int = defaults.CTX
    n_gpu_layers: int = defaults.N_GPU_LAYERS  # 999 = all; llama.cpp clamps to the layer count
    cache_type_k: str = defaults.CACHE_TYPE
    cache_type_v: str = defaults.CACHE_TYPE
    flash_attn: str = defaults.FLASH_ATTN
    parallel: int = defaults.PARALLEL
    kv_unified: bool = defaults.KV_UNIFIED  # what llama-server's automatic slots do
    ubatch: int = defaults.UBATCH
    batch: int = defaults.BATCH
    threads: int = defaults.THREADS  # 0 = the engine's default
    swa_full: bool = False
    # Tokens generated for a request that sets no max_tokens (llama-server -n); 0 = no cap. A client
    # that sends none, then gives up, would otherwise hold a slot until the context is full.
    n_predict: int = defaults.N_PREDICT
    # llama-server's prompt cache cap (MiB of host RAM, 0 = off) and context checkpoints per slot:
    # both grow after READY, so both are always passed and predicted
    cache_ram_mib: int = defaults.CACHE_RAM_MIB
    ctx_checkpoints: int = defaults.CTX_CHECKPOINTS
    host: str = defaults.HOST
    port: int = defaults.PORT
    flavor: str = defaults.FLAVOR
    api_key: str = ""
    alias: str = ""
    extra_args: tuple[str, ...] = ()
    # A model split over RPC workers (llama-server --rpc host:port,… and -ts, in its device order:
    # the workers, then a local GPU). n_gpu_layers then says how many layers leave the local CPU.
    rpc: tuple[str, ...] = ()
    tensor_split: tuple[float, ...] = ()
    # Speculative decoding: llama-server --spec-type (an n-gram mode, or draft-simple with a draft
    # model from the library: an absolute path), and the tokens drafted per step (0 = its default)
    spec_type: str = ""
    draft_model: str = ""
    draft_max: int = 0
    # vLLM: the KV cache space it reserves (VLLM_CPU_KVCACHE_SPACE on the CPU; on a GPU the share
    # of memory, --gpu-memory-utilization, comes from it and the total)
    kv_space_mib: int = 1024

    def __post_init__(self) -> None:
        validate_spec(self)

    @property
    def model_name(self) -> str:
        return self.model.rsplit("/", 1)[-1]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["extra_args"] = list(self.extra_args)
        data["rpc"] = list(self.rpc)
        data["tensor_split"] = list(self.tensor_split)
        return data

    def public_json(self) -> dict[str, Any]:
        """The spec without secrets, for logs, history and the audit trail."""
        data = self.to_json()
        data["api_key"] = "***" if self.api_key else ""
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EngineSpec:
        known = {f for f in cls.__dataclass_fields__}
        clean = {k: v for k, v in data.items() if k in known}
        clean["extra_args"] = tuple(clean.get("extra_args", ()))
        clean["rpc"] = tuple(clean.get("rpc", ()))
        clean["tensor_split"] = tuple(float(x) for x in clean.get("tensor_split", ()))
        return cls(**clean)

    def spec_hash(self) -> str:
        blob = json.dumps(self.public_json(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def validate_spec(spec: EngineSpec) -> None:
    """Range and choice checks; each message names the field and what is allowed."""
    problems: list[str] = []
    if not spec.model:
        problems.append("no model chosen")
    if not 0 <= spec.ctx <= 4_194_304:
        problems.append(f"context size {spec.ctx} is out of range (0..4194304)")
    if spec.n_gpu_layers < 0 or spec.n_gpu_layers > 999:
        problems.append(f"GPU layers {spec.n_gpu_layers} is out of range (0..999, 999 = all)")
    for name, value in (("K", spec.cache_type_k), ("V", spec.cache_type_v)):
        if value not in CACHE_TYPES:
            problems.append(f"{name} cache type {value!r} is not one of {', '.join(CACHE_TYPES)}")
    if spec.flash_attn not in FLASH_ATTN:
        problems.append(f"flash attention must be auto, on or off, not {spec.flash_attn!r}")
    if spec.cache_type_v not in ("f32", "f16", "bf16") and spec.flash_attn == "off":
        problems.append(f"a quantized V cache ({spec.cache_type_v}) needs flash attention: set it to auto or on")
    if not 1 <= spec.parallel <= 256:
        problems.append(f"parallel slots {spec.parallel} is out of range (1..256)")
    if not 1 <= spec.ubatch <= 65536 or not 1 <= spec.batch <= 65536:
        problems.append("batch and ubatch must be 1..65536")
    if not 0 <= spec.threads <= 1024:
        problems.append(f"threads {spec.threads} is out of range (0..1024, 0 = default)")
    if not 0 <= spec.n_predict <= 1_048_576:
        problems.append(f"generation cap {spec.n_predict} is out of range (0..1048576, 0 = none)")
    if not 0 <= spec.cache_ram_mib <= 1_048_576:
        problems.append(f"prompt cache {spec.cache_ram_mib} MiB is out of range (0..1048576, 0 = off)")
    if not 0 <= spec.ctx_checkpoints <= 1024:
        problems.append(f"context checkpoints {spec.ctx_checkpoints} is out of range (0..1024, 0 = none)")
    if not 1 <= spec.port <= 65535:
        problems.append(f"port {spec.port} is out of range (1..65535)")
    if spec.rpc:
        from zoe_panel.workers.probe import EndpointError, parse_endpoints

        try:
            if parse_endpoints(",".join(spec.rpc)) != tuple(spec.rpc):
                problems.append(f"RPC workers {','.join(spec.rpc)}: write each once, as host:port")
        except EndpointError as e:
            problems.append(str(e))
    if spec.tensor_split:
        if any(x < 0 for x in spec.tensor_split) or not any(x > 0 for x in spec.tensor_split):
            problems.append("tensor split shares must be ≥ 0 with at least one above 0")
        elif spec.rpc and len(spec.tensor_split) not in (len(spec.rpc), len(spec.rpc) + 1):
            problems.append(
                f"tensor split has {len(spec.tensor_split)} shares for {len(spec.rpc)} RPC worker(s): "
                "one per worker (and one more for a local GPU)"
            )
    if spec.spec_type and not re.fullmatch(r"[a-z0-9-]+(,[a-z0-9-]+)*", spec.spec_type):
        problems.append(f"speculative type {spec.spec_type!r}: names like ngram-simple or draft-simple")
    if spec.draft_model and spec.spec_type and "draft" not in spec.spec_type:
        problems.append(f"a draft model needs a draft speculative type (draft-simple), not {spec.spec_type!r}")
    if not 256 <= spec.kv_space_mib <= 1 << 22:
        problems.append(f"KV space {spec.kv_space_mib} MiB is out of range (256..4194304)")
    if not 0 <= spec.draft_max <= 64:
        problems.append(f"draft tokens {spec.draft_max} is out of range (0..64, 0 = the engine's default)")
    if spec.flavor not in flavors.names():
        problems.append(f"flavor {spec.flavor!r} is not one of {', '.join(flavors.names())}")
    if problems:
        raise ConfigError("invalid engine settings: " + "; ".join(problems))


@dataclass(frozen=True)
class EngineStatus:
    """A snapshot of the engine, derived from pidfiles/containers and a health probe."""

    state: EngineState
    backend: str = "process"
    spec: EngineSpec | None = None
    pid: int | None = None
    container_id: str | None = None
    run_id: str | None = None
    started_at: float | None = None
    ready_at: float | None = None
    exit_code: int | None = None
    reason: str = ""
    restarts: int = 0
    # FAILED but coming back: the backend's restart policy restarts it (a wait goes on waiting)
    restarting: bool = False
    log_tail: tuple[str, ...] = field(default=(), repr=False)

    @property
    def base_url(self) -> str | None:
        if self.spec is None:
            return None
        host = "127.0.0.1" if self.spec.host in ("0.0.0.0", "::") else self.spec.host
        return f"http://{host}:{self.spec.port}"

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state.value.lower(),
            "backend": self.backend,
            "flavor": self.spec.flavor if self.spec else None,
            "model": self.spec.model_name if self.spec else None,
            "model_path": self.spec.model if self.spec else None,
            "base_url": self.base_url,
            "pid": self.pid,
            "container_id": self.container_id,
            "run_id": self.run_id,
            "started_at": self.started_at,
            "ready_at": self.ready_at,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "restarts": self.restarts,
            "restarting": self.restarting,
            "spec": self.spec.public_json() if self.spec else None,
        }


@runtime_checkable
class Backend(Protocol):
    """Where one engine runs at a time (a local process tree, a container); see backends.py."""

    name: str

    def is_available(self) -> tuple[bool, str]: ...

    def start(self, spec: EngineSpec, *, run_id: str) -> EngineStatus: ...

    def stop(self, timeout_s: float) -> EngineStatus: ...

    def status(self) -> EngineStatus: ...

    def logs(self, tail: int = 200) -> list[str]: ...

    def build_info(self) -> str:
        """The running engine's build when this backend knows it better than the flavour ('')."""
        ...
