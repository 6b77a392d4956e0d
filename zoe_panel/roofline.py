"""The memory-bandwidth ceiling of decoding: every generated token reads the weights on the device
and the KV cache in use once, so tokens/s can not beat bandwidth / bytes-per-token.

Bandwidth comes from Settings (memory_bandwidth_gbps), else a table of known devices, else one
measurement of this machine's memory copy speed, stored in the state folder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoe_panel.jsonfile import read_cache, write_json_atomic

# GB/s (10^9), vendors' datasheets
KNOWN_GBPS: dict[str, float] = {
    "Jetson Orin NX 16GB": 102.4,
    "Jetson Orin NX 8GB": 102.4,
    "Jetson Orin Nano 8GB": 68.0,
    "Jetson Orin Nano 4GB": 34.0,
    "Jetson AGX Orin 64GB": 204.8,
    "Jetson AGX Orin 32GB": 204.8,
    "H100 SXM": 3350.0,
    "H100 PCIe": 2000.0,
    "H200": 4800.0,
    "A100 80GB": 2039.0,
}


@dataclass(frozen=True)
class Bandwidth:
    gbps: float
    source: str  # "settings", "table: <device>", "measured <date>"


def device_name(tegra_model: Path = Path("/proc/device-tree/model"), gpu_name: str = "") -> str:
    """A key of KNOWN_GBPS for this machine, or ''."""
    try:
        model = tegra_model.read_text(errors="replace").strip("\x00\n ")
    except OSError:
        model = ""
    text = f"{model} {gpu_name}"
    for key in KNOWN_GBPS:
        words = key.lower().replace("jetson ", "").split()
        if all(w in text.lower() for w in words):
            return key
    if "H100" in gpu_name and "PCIe" not in gpu_name:
        return "H100 SXM"
    return ""


def measure_gbps(size_mb: int = 512, repeats: int = 5) -> float:
    """Copy speed of main memory (bytes read + written), best of a few numpy copies."""
    import numpy as np

    a = np.ones(size_mb * 2**20 // 8, dtype=np.float64)
    b = np.empty_like(a)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t)
    return 2 * a.nbytes / best / 1e9


def bandwidth(
    setting_gbps: float, state_file: Path, *, gpu_name: str = "", tegra_model: Path = Path("/proc/device-tree/model")
) -> Bandwidth:
    if setting_gbps > 0:
        return Bandwidth(setting_gbps, "settings")
    name = device_name(tegra_model, gpu_name)
    if name:
        return Bandwidth(KNOWN_GBPS[name], f"table: {name}")
    data = read_cache(state_file, dict)
    try:
        return Bandwidth(float(data["gbps"]), f"measured {data['date']}")
    except (ValueError, KeyError, TypeError):
        pass
    gbps = measure_gbps()
    write_json_atomic(state_file, {"gbps": gbps, "date": time.strftime("%Y-%m-%d")})
    return Bandwidth(gbps, f"measured {time.strftime('%Y-%m-%d')}")


def ceiling_tokens_per_s(bw: Bandwidth, weights_bytes: int, kv_bytes_per_token: int, context_tokens: int) -> float:
    per_token = weights_bytes + kv_bytes_per_token * max(0, context_tokens)
    return bw.gbps * 1e9 / per_token if per_token else 0.0


def ceiling_for(est: Any, stats: dict[str, Any], bw: Bandwidth) -> float:
    """Ceiling for one reply: weights on the device (all of them on a CPU or Jetson) plus the KV of the
    tokens in its context (prompt + generated), per token."""
    weights = est.weights_gpu_bytes or est.weights_bytes
    per_token = est.kv_bytes // max(1, est.kv_cells)
    tokens = int(stats.get("prompt_tokens") or 0) + int(stats.get("completion_tokens") or 0)
    return ceiling_tokens_per_s(bw, weights, per_token, tokens)
