"""Benchmark 14: Hugging Face checkpoint -> GGUF. A Llama checkpoint of real shape (24 layers,
512 wide, GQA 8:4, FFN 1536, 8000-token SentencePiece vocabulary trained here; 83M parameters,
166 MB of f16 safetensors) converted by the panel (preflight, llama.cpp's converter as a job,
validation, rename into the library) and by llama.cpp's converter run by hand (the baseline),
then quantized to Q4_K_M."""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from common import MIB, ROOT, Table, scratch_runtime

from zoe_panel.build.server import ensure_source
from zoe_panel.models.convert import support, support_size


def main(smoke: bool = False) -> Table:
    rt = scratch_runtime()
    sup = support(rt.settings.cache_dir)
    t = Table(
        "14. Convert a Hugging Face checkpoint to GGUF, then quantize",
        ["step", "seconds", "output MiB", "ratio panel / by hand"],
    )
    if not sup.ready:
        t.notes.append(f"skipped: conversion support is {sup.detail}")
        rt.close()
        return t
    tmp = Path(tempfile.mkdtemp(prefix="zoe-b14-"))
    shape = ["--layers", "2", "--hidden", "256"] if smoke else ["--layers", "24", "--hidden", "512"]
    shape += ["--heads", "8", "--kv-heads", "4", "--ff", "1536", "--vocab", "2000" if smoke else "8000"]
    ck = tmp / "llama-83m"
    t0 = time.perf_counter()
    subprocess.run([str(sup.python), str(ROOT / "tests/make_hf_checkpoint.py"), str(ck), *shape], check=True)
    made = time.perf_counter() - t0
    src_mib = sum(p.stat().st_size for p in ck.glob("*.safetensors")) / MIB
    llama_cpp = ensure_source(rt.settings.cache_dir)
    t0 = time.perf_counter()
    hand = tmp / "by-hand.gguf"
    subprocess.run(
        [
            str(sup.python),
            str(llama_cpp / "convert_hf_to_gguf.py"),
            str(ck),
            "--outfile",
            str(hand),
            "--outtype",
            "f16",
        ],
        check=True,
        capture_output=True,
        cwd=llama_cpp,
    )
    by_hand = time.perf_counter() - t0
    t0 = time.perf_counter()
    job = rt.jobs.wait(rt.start_convert(str(ck)), 1200)
    assert job.state == "done", job.error
    panel = time.perf_counter() - t0
    out = Path(job.result)
    t.add("make the checkpoint (not timed against anything)", round(made, 1), round(src_mib, 1), None)
    t.add(
        "convert to F16 by hand (convert_hf_to_gguf.py), the baseline",
        round(by_hand, 1),
        round(hand.stat().st_size / MIB, 1),
        1.0,
    )
    t.add(
        "convert to F16 in the panel (preflight, job, checks)",
        round(panel, 1),
        round(out.stat().st_size / MIB, 1),
        round(panel / by_hand, 3),
    )
    t0 = time.perf_counter()
    q = rt.jobs.wait(rt.start_quantize(out.name, "Q4_K_M"), 1200)
    assert q.state == "done", q.error
    t.add(
        "quantize F16 -> Q4_K_M in the panel",
        round(time.perf_counter() - t0, 1),
        round(Path(q.result).stat().st_size / MIB, 1),
        None,
    )
    t.notes.append(
        f"Source: {src_mib:.0f} MiB of f16 safetensors. The conversion support ({sup.detail}) is a separate "
        f"venv of {support_size(rt.settings.cache_dir) / MIB:.0f} MiB."
    )
    rt.close()
    return t


if __name__ == "__main__":
    print(main().markdown())
