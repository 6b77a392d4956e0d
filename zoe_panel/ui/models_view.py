"""Models page rows."""

from __future__ import annotations

from typing import Any

from zoe_panel.models.store import describe
from zoe_panel.runtime import Runtime
from zoe_panel.ui.library_view import verified_label

MIB = 1024**2


def model_rows(rt: Runtime) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    rows: list[dict[str, Any]] = []
    invalid: list[tuple[str, str]] = []
    for e in rt.store.entries():
        if e.info is None or e.error:
            invalid.append((e.name, e.error))
            if e.info is None:
                continue
        d = describe(e.info)
        rows.append(
            {
                "file": e.name,
                "architecture": d["architecture"],
                "params": d["size_label"],
                "quant": d["quantization"],
                "layers": d["layers"],
                "KV heads": str(d["kv_heads"]),
                "head size": d["head_size"],
                "trained ctx": d["context_train"],
                "sliding window": d["sliding_window"],
                "size (MiB)": round(e.size_bytes / MIB, 1),
                "verified": verified_label(rt, e.path),
            }
        )
    return rows, invalid


def hf_rows(rt: Runtime) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """The Hugging Face folders vLLM serves: downloaded repos and folders made from a GGUF."""
    rows: list[dict[str, Any]] = []
    invalid: list[tuple[str, str]] = []
    for e in rt.store.hf_entries():
        if e.model is None or e.error:
            invalid.append((e.name, e.error))
            continue
        m = e.model
        rows.append(
            {
                "folder": e.name,
                "architecture": m.architecture,
                "params": f"{m.parameter_count / 1e6:,.0f}M" if not m.quantized else "",
                "weights": f"{m.quant_method} {m.quant_bits}-bit" if m.quantized else (m.dtype or "?"),
                "layers": m.shape.n_layer,
                "KV heads": m.shape.layers[0].n_head_kv if m.shape.layers else 0,
                "trained ctx": m.shape.n_ctx_train,
                "size (MiB)": round(e.size_bytes / MIB, 1),
                "from": m.source.get("repo", "") or (f"made from {e.made_from}" if e.made_from else "added here"),
            }
        )
    return rows, invalid
