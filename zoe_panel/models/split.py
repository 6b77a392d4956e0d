"""A model split over this machine and RPC workers: which layers go where, and each node's memory.

llama.cpp assigns layers the way this module replays it (``llama_model::load_tensors``):
- the devices are the RPC workers in ``--rpc`` order, then the local GPU if there is one;
- of the ``n_layer + 1`` layers (the output layer counts as one), the first ``n_layer + 1 - ngl``
  stay on the local CPU; the others go to device ``upper_bound(splits, (il - start) / n_offloaded)``
  where ``splits`` are the cumulative, normalised ``--tensor-split`` shares (float32, as in C);
- the input layer (token embedding) always stays on the local CPU; the output layer goes with the
  last offloaded layer, and a tied output (no ``output.weight``) copies the token embedding there.

The panel's ``--tensor-split`` has one share per worker, then one for this machine. On a GPU box the
local share is llama-server's last ``-ts`` value; on a CPU-only box the CPU is not a split device, so
the local share becomes ``-ngl`` (the first layers stay on the CPU). Pure: no I/O.
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass, field
from typing import Any

from zoe_panel.engine.base import EngineSpec
from zoe_panel.errors import ConfigError
from zoe_panel.models import fit
from zoe_panel.models.gguf_meta import GGUFInfo
from zoe_panel.models.shape import ModelShape, model_shape

MIB = 1024 * 1024
# rpc-server itself: its binary, libraries and the ggml CPU backend, before any buffer (measured RSS
# of an idle rpc-server on this machine: 9-12 MiB)
WORKER_PROCESS_BYTES = 16 * MIB


class SplitError(ConfigError, ValueError):
    """A split that cannot be made (wrong number of shares, negative shares, no workers)."""


def _f32(x: float) -> float:
    return float(struct.unpack("f", struct.pack("f", x))[0])


@dataclass(frozen=True)
class Node:
    """One place layers can go. ``name``: "local" or the worker's host:port."""

    name: str
    free_bytes: int
    source: str = ""  # where free_bytes came from: this machine, the worker, or by hand

    @property
    def is_local(self) -> bool:
        return self.name == "local"


@dataclass(frozen=True)
class NodePart:
    node: Node
    share: float
    layers: tuple[int, ...]  # repeating layers (blk.N) held here
    output: bool  # the output layer (and with a tied output, a copy of the token embedding)
    weights_bytes: int
    kv_bytes: int
    compute_bytes: int
    other_bytes: int  # local: the rest of the engine (tables, output buffer, prompt cache, …); worker: rpc-server

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_bytes + self.compute_bytes + self.other_bytes

    @property
    def verdict(self) -> fit.Verdict:
        return fit.verdict(self.total_bytes, self.node.free_bytes)

    @property
    def layer_text(self) -> str:
        if not self.layers:
            return "output only" if self.output else "none"
        text = f"{self.layers[0]}-{self.layers[-1]}" if len(self.layers) > 1 else str(self.layers[0])
        return f"{len(self.layers)} ({text})" + (" + output" if self.output else "")

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node.name,
            "free_bytes": self.node.free_bytes,
            "free_source": self.node.source,
            "share": round(self.share, 4),
            "layers": list(self.layers),
            "n_layers": len(self.layers),
            "output": self.output,
            "weights_bytes": self.weights_bytes,
            "kv_bytes": self.kv_bytes,
            "compute_bytes": self.compute_bytes,
            "other_bytes": self.other_bytes,
            "total_bytes": self.total_bytes,
            "verdict": str(self.verdict),
        }


@dataclass(frozen=True)
class SplitPlan:
    parts: tuple[NodePart, ...]  # workers in --rpc order, then local
    rpc: tuple[str, ...]
    tensor_split: tuple[float, ...]  # llama-server's -ts, in its device order
    n_gpu_layers: int
    local_gpu: bool
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def local(self) -> NodePart:
        return self.parts[-1]

    @property
    def workers(self) -> tuple[NodePart, ...]:
        return self.parts[:-1]

    @property
    def verdict(self) -> fit.Verdict:
        order = list(fit.Verdict)
        return max((p.verdict for p in self.parts), key=order.index)

    def part_for(self, endpoint: str) -> NodePart | None:
        return next((p for p in self.parts if p.node.name == endpoint), None)

    def ts_arg(self) -> str:
        return ",".join(_fmt(x) for x in self.tensor_split)

    def to_json(self) -> dict[str, Any]:
        return {
            "rpc": list(self.rpc),
            "tensor_split": list(self.tensor_split),
            "n_gpu_layers": self.n_gpu_layers,
            "local_gpu": self.local_gpu,
            "verdict": str(self.verdict),
            "nodes": [p.to_json() for p in self.parts],
            "notes": list(self.notes),
        }


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def parse_shares(text: str, n: int) -> tuple[float, ...]:
    """``a,b,c``: one share per worker, then one for this machine (``n`` values in all)."""
    try:
        vals = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise SplitError(f"tensor split {text!r}: write numbers separated by commas, e.g. 1,1,2") from None
    if len(vals) != n:
        raise SplitError(
            f"tensor split {text!r} has {len(vals)} values; it needs {n}: one per worker, then one for this machine"
        )
    if any(v < 0 for v in vals) or not any(v > 0 for v in vals):
        raise SplitError(f"tensor split {text!r}: shares must be ≥ 0 and at least one above 0")
    return vals


def shares_by_free(nodes: list[Node]) -> tuple[float, ...]:
    """Shares in proportion to free memory, rounded so they survive the trip through argv."""
    total = sum(max(0, n.free_bytes) for n in nodes) or 1
    return tuple(float(_fmt(100 * max(0, n.free_bytes) / total)) for n in nodes)


def layer_devices(n_layer: int, n_gpu_layers: int, shares: tuple[float, ...]) -> list[int]:
    """Device index (into ``shares``) of each of the ``n_layer + 1`` layers; -1 = the local CPU."""
    splits: list[float] = []
    acc = _f32(0.0)
    for s in shares:
        acc = _f32(acc + _f32(s))
        splits.append(acc)
    splits = [_f32(x / acc) for x in splits]
    n_all = n_layer + 1
    start = max(n_all - n_gpu_layers, 0)
    act = min(n_gpu_layers, n_all) if shares else 0
    out = []
    for il in range(n_all):
        if il < start or il - start >= act:
            out.append(-1)
        else:
            out.append(min(bisect.bisect_right(splits, _f32(_f32(il - start) / act)), len(shares) - 1))
    return out


def _kv_by_layer(shape: ModelShape, spec: EngineSpec) -> dict[int, int]:
    caches, _n_ctx, n_ctx_seq = fit.kv_caches(shape, spec)
    by_name = {c.name: c for c in caches}
    layers = shape.kv_layers
    if not layers:
        return {}
    fa = spec.flash_attn != "off"
    v_max = max(la.v_row for la in layers)
    out = {}
    for la in layers:
        c = by_name.get("SWA" if la.is_swa and "SWA" in by_name else ("KV" if "KV" in by_name else "non-SWA"))
        cells = c.cells if c else n_ctx_seq
        streams = c.streams if c else 1
        k = fit.row_bytes(spec.cache_type_k, la.k_row) * cells * streams
        v = 0 if shape.is_mla else fit.row_bytes(spec.cache_type_v, la.v_row if fa else v_max) * cells * streams
        out[la.index] = k + v
    return out


def plan_split(
    info: GGUFInfo,
    spec: EngineSpec,
    est: fit.Estimate,
    local_free_bytes: int,
    workers: list[Node],
    *,
    shares: tuple[float, ...] | None = None,
    local_gpu: bool = False,
) -> SplitPlan:
    """Place the model over ``workers`` (then this machine) by the panel's shares (default: in
    proportion to free memory) and size each node.

    ``est`` is the single-machine estimate of the same spec: this machine keeps everything in it
    except the weights, KV and repacked copies of the layers that move to workers."""
    if not workers:
        raise SplitError("no RPC workers: add at least one host:port")
    shape = model_shape(info)
    local = Node("local", local_free_bytes, "this machine")
    nodes = [*workers, local]
    shares = shares if shares is not None else shares_by_free(nodes)
    if len(shares) != len(nodes):
        raise SplitError(f"{len(shares)} shares for {len(nodes)} nodes (workers, then this machine)")
    n_all = shape.n_layer + 1
    notes = []
    if local_gpu:
        ngl = min(spec.n_gpu_layers, n_all)
        dev_shares = tuple(shares)
    else:
        local_layers = min(n_all - 1, round(n_all * shares[-1] / sum(shares)))
        ngl = n_all - local_layers
        dev_shares = tuple(shares[:-1])
        if not any(s > 0 for s in dev_shares):
            raise SplitError("every worker's share is 0: give at least one worker a share")
        if local_layers:
            notes.append(
                f"this machine has no GPU, so its share is the first {local_layers} layer(s) kept on its "
                f"CPU (-ngl {ngl}); the workers share the rest by -ts {','.join(map(_fmt, dev_shares))}"
            )
    return place(info, spec, est, nodes, dev_shares, ngl, local_gpu=local_gpu, shares=tuple(shares), notes=notes)


def plan_for_spec(
    info: GGUFInfo, spec: EngineSpec, est: fit.Estimate, local_free_bytes: int, workers: list[Node], *, local_gpu: bool
) -> SplitPlan:
    """The placement of a spec that already carries llama-server's -ngl and -ts (a running engine)."""
    nodes = [*workers, Node("local", local_free_bytes, "this machine")]
    n_dev = len(workers) + (1 if local_gpu else 0)
    dev = tuple(spec.tensor_split) if len(spec.tensor_split) == n_dev else tuple([1.0] * n_dev)
    return place(
        info, spec, est, nodes, dev, min(spec.n_gpu_layers, model_shape(info).n_layer + 1), local_gpu=local_gpu
    )


def place(
    info: GGUFInfo,
    spec: EngineSpec,
    est: fit.Estimate,
    nodes: list[Node],
    dev_shares: tuple[float, ...],
    ngl: int,
    *,
    local_gpu: bool,
    shares: tuple[float, ...] | None = None,
    notes: list[str] | None = None,
) -> SplitPlan:
    """Size each node for llama-server's own -ngl and -ts (``dev_shares``, its device order)."""
    shape = model_shape(info)
    devices = layer_devices(shape.n_layer, ngl, dev_shares)
    where = [len(nodes) - 1 if d == -1 else d for d in devices]
    kv = _kv_by_layer(shape, spec)
    per_layer = info.layer_tensor_bytes
    tied = not info.output_tensor_bytes
    out_bytes = info.output_tensor_bytes or info.token_embd_bytes
    rest = max(0, info.other_tensor_bytes - info.token_embd_bytes - info.output_tensor_bytes)  # norms
    out_node = where[shape.n_layer]
    # A worker's graph also holds its split's inputs: the KQ mask again in f32 and f16 beside the
    # copy the graph uses (loopback workers: +6 bytes per cell per ubatch token; weights and KV are
    # exact, compute stays within about 20 %: bench 15)
    cells = sum(c.cells for c in est.kv)
    gpu_compute = fit.compute_bytes(shape, spec, list(est.kv), gpu=True) + 6 * cells * spec.ubatch
    if shares is None:
        n_layers = [sum(1 for w in where if w == i) for i in range(len(nodes))]
        shares = tuple(float(n) for n in n_layers)
    parts = []
    moved_weights = moved_kv = 0
    for i, node in enumerate(nodes[:-1]):
        layers = tuple(il for il in range(shape.n_layer) if where[il] == i)
        has_out = out_node == i
        w = sum(per_layer[il] for il in layers if il < len(per_layer)) + ((out_bytes + rest) if has_out else 0)
        k = sum(kv.get(il, 0) for il in layers)
        # a tied output's copy on a worker moves nothing: the token embedding stays here (input layer)
        moved_weights += w - (out_bytes if has_out and tied else 0)
        moved_kv += k
        compute = gpu_compute if layers or has_out else 0
        parts.append(NodePart(node, shares[i], layers, has_out, w, k, compute, WORKER_PROCESS_BYTES))
    i = len(nodes) - 1
    layers = tuple(il for il in range(shape.n_layer) if where[il] == i)
    cpu_share = len(layers) / max(1, shape.n_layer)
    repack_moved = int(est.repack_bytes * (1 - cpu_share)) if est.repack_bytes else 0
    other = est.total_bytes - est.weights_bytes - est.kv_bytes - est.compute_at_ready_bytes - repack_moved
    local_w = info.tensor_bytes - moved_weights
    local_kv = max(0, est.kv_bytes - moved_kv)
    local_compute = est.compute_at_ready_bytes
    parts.append(NodePart(nodes[-1], shares[-1], layers, out_node == i, local_w, local_kv, local_compute, other))
    return SplitPlan(
        tuple(parts),
        tuple(n.name for n in nodes[:-1]),
        tuple(float(_fmt(s)) for s in dev_shares),
        ngl,
        local_gpu,
        tuple(notes or ()),
    )


def reported_by_node(events: list[Any], rpc: tuple[str, ...]) -> dict[str, dict[str, int]]:
    """What llama.cpp reported per node from its load events: weights, KV and compute by
    ``RPCn[host:port]`` buffer (workers) and by CPU buffers (this machine)."""
    out: dict[str, dict[str, int]] = {ep: {} for ep in rpc}
    out["local"] = {}
    names = {"model_buffer": "weights_bytes", "kv_buffer": "kv_bytes", "compute_buffer": "compute_bytes"}
    for e in events:
        key = names.get(getattr(e, "phase", ""))
        if key is None or e.bytes is None:
            continue
        dev = str(e.device)
        node = "local"
        if "[" in dev and dev.endswith("]"):
            node = dev[dev.index("[") + 1 : -1]
        if node not in out:
            continue
        if node == "local" and key == "weights_bytes" and dev.upper().startswith("CPU_MAPPED"):
            key = "mapped_bytes"  # the file's mapped range, not an allocation
        out[node][key] = out[node].get(key, 0) + int(e.bytes)
    return out


def compare(plan: SplitPlan, events: list[Any]) -> list[dict[str, Any]]:
    """Predicted against reported, per worker: the truth test for the placement."""
    seen = reported_by_node(events, plan.rpc)
    rows = []
    for p in plan.workers:
        got = seen.get(p.node.name, {})
        row: dict[str, Any] = {"node": p.node.name, "layers": len(p.layers), "output": p.output}
        for key, want in (
            ("weights_bytes", p.weights_bytes),
            ("kv_bytes", p.kv_bytes),
            ("compute_bytes", p.compute_bytes),
        ):
            have = got.get(key)
            row[f"predicted_{key}"] = want
            row[f"reported_{key}"] = have
            row[f"error_pct_{key}"] = None if not have else round(100 * (want - have) / have, 2)
        rows.append(row)
    return rows
