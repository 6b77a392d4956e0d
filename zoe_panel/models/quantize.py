"""Quantize a model with llama-cpp-python's ``llama_model_quantize``, as a background job.

The work runs in a child process (``python -m zoe_panel.models.quantize``): llama.cpp's quantizer
cannot be interrupted from Python, so Cancel kills the child. Progress comes from the per-tensor
lines llama.cpp logs (``[  12/ 201] blk.1.attn_k.weight ...``). The output is written to the
staging folder and renamed into the library only once it parses as GGUF.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from zoe_panel.errors import InvalidModelError, ModelStoreError
from zoe_panel.models.library import STAGING, safe_name, validate_gguf
from zoe_panel.models.store import ModelStore, quant_name

# target -> (llama_ftype, bits per weight for the size estimate; llama.cpp's quantize table)
TARGETS: dict[str, tuple[int, float]] = {
    "Q4_K_M": (15, 4.89),
    "Q4_K_S": (14, 4.58),
    "Q5_K_M": (17, 5.70),
    "Q5_K_S": (16, 5.54),
    "Q6_K": (18, 6.56),
    "Q8_0": (7, 8.50),
    "Q4_0": (2, 4.55),
    "Q3_K_M": (12, 3.91),
    "Q2_K": (10, 3.35),
    "IQ4_NL": (25, 4.50),
    "F16": (1, 16.0),
    "BF16": (32, 16.0),
}
SOURCES = ("F32", "F16", "BF16", "Q8_0")
_PROGRESS_RE = re.compile(r"\[\s*(\d+)\s*/\s*(\d+)\]")


def output_name(src_name: str, target: str) -> str:
    stem = Path(src_name).stem
    base = re.sub(r"[-_.](?:F32|F16|BF16|Q8_0)$", "", stem, flags=re.I)
    return safe_name(f"{base}-{target}.gguf")


def plan(store: ModelStore, model: str, target: str) -> tuple[Path, str, int, bool]:
    """(source path, output name, estimated output bytes, needs allow_requantize) or a clear refusal."""
    if target not in TARGETS:
        raise ModelStoreError(f"unknown quantization type {target!r}; choose from {', '.join(TARGETS)}")
    src = store.resolve(model)
    info = store.info(src)
    if info.is_truncated:
        raise InvalidModelError(f"{model} is truncated; download it again before quantizing")
    source_type = quant_name(info.get("general.file_type"))
    if source_type not in SOURCES:
        raise ModelStoreError(
            f"{model} is {source_type}; quantize from an F32, F16, BF16 or Q8_0 file "
            "(re-quantizing a low-bit model loses quality)"
        )
    name = output_name(src.name, target)
    if (store.root / name).exists():
        raise ModelStoreError(f"{name} is already in the library")
    est = int(info.parameter_count * TARGETS[target][1] / 8) + (info.tensor_data_end - info.tensor_bytes)
    return src, name, est, source_type == "Q8_0"


def run(
    store: ModelStore,
    model: str,
    target: str,
    *,
    margin_bytes: int = 0,
    threads: int = 0,
    progress: Callable[[float, str], None] = lambda f, d: None,
    cancel: threading.Event | None = None,
) -> Path:
    import shutil

    src, name, est, requant = plan(store, model, target)
    free = shutil.disk_usage(store.ensure_root()).free
    if est + margin_bytes > free:
        raise ModelStoreError(
            f"not enough disk space to quantize: the output needs about {est / 2**30:.2f} GiB, "
            f"{free / 2**30:.2f} GiB is free and {margin_bytes / 2**30:.2f} GiB must stay free"
        )
    staging = store.ensure_root() / STAGING
    staging.mkdir(exist_ok=True)
    part = staging / (name + ".part")
    cmd = [
        sys.executable,
        "-m",
        "zoe_panel.models.quantize",
        str(src),
        str(part),
        str(TARGETS[target][0]),
        "--threads",
        str(threads),
    ] + (["--allow-requantize"] if requant else [])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")) if p
    )
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    tail: list[str] = []
    watcher = threading.Thread(target=_kill_on_cancel, args=(proc, cancel), daemon=True)
    watcher.start()
    assert proc.stdout is not None
    for line in proc.stdout:
        tail = (tail + [line.rstrip()])[-20:]
        m = _PROGRESS_RE.search(line)
        if m:
            i, n = int(m[1]), int(m[2])
            progress(i / n, f"tensor {i}/{n}")
    code = proc.wait()
    if cancel is not None and cancel.is_set():
        part.unlink(missing_ok=True)
        raise ModelStoreError("quantization cancelled; nothing was kept")
    if code != 0:
        # llama.cpp reports a full disk only as a generic iostream error, so judge by the space:
        # what was written plus what is still free is less than the output needs.
        written = part.stat().st_size if part.exists() else 0
        out_of_space = written + shutil.disk_usage(staging).free < est
        part.unlink(missing_ok=True)
        text = "\n".join(tail)
        if out_of_space or "No space left" in text or "ENOSPC" in text:
            raise ModelStoreError("the disk filled up during quantization: nothing was kept; free space and retry")
        raise ModelStoreError(f"quantization failed (exit {code}): {tail[-1] if tail else ''}")
    try:
        validate_gguf(part, name)
    except InvalidModelError:
        part.unlink(missing_ok=True)
        raise
    target_path = store.root / name
    os.link(part, target_path)
    part.unlink()
    return target_path


def _kill_on_cancel(proc: subprocess.Popen[str], cancel: threading.Event | None) -> None:
    if cancel is None:
        return
    while proc.poll() is None:
        if cancel.wait(0.2):
            proc.kill()
            return


def main(argv: list[str] | None = None) -> int:
    """The child process: quantize and exit 0, or print the error and exit 1."""
    p = argparse.ArgumentParser(prog="zoe-panel-quantize")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("ftype", type=int)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--allow-requantize", action="store_true")
    args = p.parse_args(argv)
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = args.ftype
    params.nthread = args.threads
    params.allow_requantize = args.allow_requantize
    rc = llama_cpp.llama_model_quantize(args.src.encode(), args.dst.encode(), params)
    if rc != 0:
        print(f"llama_model_quantize returned {rc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
