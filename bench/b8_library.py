"""Benchmark 8 (model library): download throughput through the panel (huggingface_hub plus its
staging, sha256 check and atomic rename) vs huggingface_hub's hf_hub_download straight to a folder,
against the same local Hub server; and quantization time of a synthetic F16 model."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, SMOL, Table, median, scratch_runtime

sys.path.insert(0, str(ROOT / "tests"))
from hub_server import FakeHub

from zoe_panel.models import download as dl
from zoe_panel.models.synth import SynthShape, read_tokenizer, write_synthetic


def main(smoke: bool = False) -> Table:
    reps = 1 if smoke else 5
    rt = scratch_runtime()
    # the Hub serves its own copy: the loop below deletes the library's file before each download
    hub_dir = Path(tempfile.mkdtemp(prefix="zoe-hub-"))
    src = hub_dir / SMOL
    shutil.copyfile(rt.store.root / SMOL, src)
    hub = FakeHub()
    hub.add("org/smol-GGUF", SMOL, src)
    server, url = hub.serve()
    (model,) = [m for m in dl.list_gguf("org/smol-GGUF", endpoint=url) if m.label == SMOL]
    panel, direct = [], []
    try:
        from huggingface_hub import hf_hub_download

        for _ in range(reps):
            (rt.store.root / SMOL).unlink(missing_ok=True)
            t = time.perf_counter()
            dl.download(rt.store, "org/smol-GGUF", model, endpoint=url, margin_bytes=0)
            panel.append(model.size / (time.perf_counter() - t) / 2**20)
            d = Path(tempfile.mkdtemp())
            t = time.perf_counter()
            try:
                hf_hub_download("org/smol-GGUF", SMOL, local_dir=d, endpoint=url)
            except Exception:  # a pooled connection the test server dropped: once more, timed afresh
                shutil.rmtree(d)
                d = Path(tempfile.mkdtemp())
                t = time.perf_counter()
                hf_hub_download("org/smol-GGUF", SMOL, local_dir=d, endpoint=url)
            direct.append(model.size / (time.perf_counter() - t) / 2**20)
            shutil.rmtree(d)
    finally:
        server.shutdown()
        shutil.rmtree(hub_dir, ignore_errors=True)
    shape = SynthShape(n_layer=8, n_embd=512, n_head=8, n_head_kv=2, n_ff=1536, name="quant-bench")
    write_synthetic(rt.store.root / "quant-bench-F16.gguf", shape, read_tokenizer(rt.store.root / SMOL))
    qt = []
    for _ in range(1 if smoke else 3):
        (rt.store.root / "quant-bench-Q4_K_M.gguf").unlink(missing_ok=True)
        t = time.perf_counter()
        job = rt.jobs.wait(rt.start_quantize("quant-bench-F16.gguf", "Q4_K_M"), 600)
        qt.append(time.perf_counter() - t)
        assert job.state == "done", job.error
    f16 = (rt.store.root / "quant-bench-F16.gguf").stat().st_size / 2**20
    q4 = (rt.store.root / "quant-bench-Q4_K_M.gguf").stat().st_size / 2**20
    rt.close()
    t = Table(
        f"8. Model library: download and quantization ({reps} downloads each of SmolLM2, 94 MiB, local Hub)",
        ["measure", "panel", "baseline", "ratio"],
    )
    t.add(
        "download MiB/s (panel: staging + sha256 + rename; baseline: hf_hub_download)",
        median(panel),
        median(direct),
        median(panel) / median(direct),
    )
    t.add(f"quantize F16 → Q4_K_M of a synthetic model ({f16:.0f} → {q4:.0f} MiB), seconds", median(qt), None, None)
    t.notes.append(
        "The panel's download adds a sha256 of the whole file (the Hub's published checksum) to what "
        "huggingface_hub does; that is most of the difference."
    )
    return t


if __name__ == "__main__":
    print(main().markdown())
