"""Convert a Hugging Face checkpoint to GGUF with llama.cpp's own ``convert_hf_to_gguf.py`` (and its
gguf-py), from the same vendored llama.cpp the engine is built from; then optionally quantize.

The converter imports torch, transformers and sentencepiece, which the panel does not otherwise
need: they live in a separate virtual environment, the *conversion support*, installed on demand
(``python -m zoe_panel convert --install-support``, or the button on the Models page). It is made
with ``--system-site-packages``, so a JetPack torch already on a Jetson is used as it is; on x86-64
torch comes from the PyTorch CPU index (a ~190 MB download instead of several GB of CUDA wheels).

Before anything runs, a preflight reads ``config.json``: the architecture must be one the
converter registers; a ``quantization_config`` is checked (AWQ-packed weights cannot be converted
by llama.cpp: the base model from the model card is offered instead; GPTQ is dequantized by the
converter, with a warning); the output size is estimated and the disk checked. The GGUF is written
to the staging folder, parsed, and only then renamed into the library: a failed or cancelled
conversion leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoe_panel import venvs
from zoe_panel.errors import ZoePanelError
from zoe_panel.models.library import STAGING, safe_name, space_message, validate_gguf
from zoe_panel.models.store import ModelStore

VENV = "convert-venv"
# What convert_hf_to_gguf.py imports (llama.cpp's requirements-convert_hf_to_gguf.txt, with the
# torch this panel is tested with: 2.13.0 CPU; llama.cpp asks for >= 2.6)
SUPPORT_PACKAGES = (
    "transformers==4.57.6",
    "sentencepiece>=0.1.98,<0.3.0",
    "protobuf>=4.21.0,<5.0.0",
    "safetensors",
    "numpy",
)
TORCH = "torch==2.13.0"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
OUTTYPES = ("f16", "bf16", "q8_0")
# bytes per weight of each output type, for the disk check
OUTTYPE_BYTES = {"f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32}
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
# quantization_config.quant_method values the converter dequantizes (conversion/base.py)
DEQUANTIZED = {"gptq", "fp8", "bitnet", "compressed-tensors", "modelopt", "mxfp4"}
_REGISTER_RE = re.compile(r"@ModelBase\.register\(([^)]*)\)", re.S)
_PERCENT_RE = re.compile(r"(\d{1,3})%\|")


class ConvertError(ZoePanelError):
    """A conversion that cannot (or must not) run; the message says why and what to do."""

    def __init__(self, message: str, *, base_model: str | None = None) -> None:
        super().__init__(message)
        self.base_model = base_model  # the model the card says this one was made from


def fetch_card(repo_id: str, dest: Path, *, revision: str = "main") -> Path:
    """A Hub repo's config.json and model card only: enough for the preflight, before any weights."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

    dest.mkdir(parents=True, exist_ok=True)
    kw: dict[str, Any] = {
        "revision": revision,
        "local_dir": str(dest),
        "endpoint": os.environ.get("HF_ENDPOINT") or None,
        "token": os.environ.get("HF_TOKEN") or None,
    }
    try:
        hf_hub_download(repo_id, "config.json", **kw)
    except EntryNotFoundError:
        raise ConvertError(f"{repo_id} has no config.json: not a Hugging Face checkpoint") from None
    except (HfHubHTTPError, OSError) as e:
        raise ConvertError(f"cannot read {repo_id}: {(str(e).splitlines() or [type(e).__name__])[0][:300]}") from None
    try:
        hf_hub_download(repo_id, "README.md", **kw)
    except (EntryNotFoundError, HfHubHTTPError, OSError):
        pass  # no model card: no base model to offer
    return dest


# -- conversion support (torch and friends in their own venv) ------------------------------------
@dataclass(frozen=True)
class Support:
    ready: bool
    python: Path
    detail: str  # versions when ready, else what is missing


def venv_dir(cache: Path) -> Path:
    return cache / VENV


def venv_python(cache: Path) -> Path:
    return venvs.venv_python(venv_dir(cache))


_PROBE = (
    "import json, torch, transformers, sentencepiece, safetensors, google.protobuf; "
    "print(json.dumps({'torch': torch.__version__, 'transformers': transformers.__version__}))"
)


def support(cache: Path) -> Support:
    """Whether the conversion support is installed and imports (checked, not assumed)."""
    py = venv_python(cache)
    if not py.is_file():
        return Support(False, py, "not installed: python -m zoe_panel convert --install-support")
    done = subprocess.run([str(py), "-c", _PROBE], capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["it does not import"])[-1]
        return Support(False, py, f"installed but broken ({last}): install it again")
    v = json.loads(done.stdout.strip().splitlines()[-1])
    return Support(True, py, f"torch {v['torch']}, transformers {v['transformers']}")


def install_support(
    cache: Path,
    *,
    progress: Callable[[float, str], None] = lambda f, d: None,
    cancel: threading.Event | None = None,
    torch_index: str | None = None,
) -> Support:
    """Create the venv and pip-install what the converter imports. ``torch_index``: where torch
    comes from (default the PyTorch CPU index on x86-64; "" = pip's own configuration)."""
    target = venv_dir(cache)
    py = venv_python(cache)
    if not py.is_file():
        progress(0.02, "creating the virtual environment")
        subprocess.run(
            [sys.executable, "-m", "venv", "--system-site-packages", str(target)], check=True, capture_output=True
        )
    index = os.environ.get("ZOE_TORCH_INDEX", TORCH_CPU_INDEX) if torch_index is None else torch_index
    has_torch = subprocess.run([str(py), "-c", "import torch"], capture_output=True, check=False).returncode == 0
    steps: list[tuple[str, list[str]]] = []
    if not has_torch:  # a Jetson's JetPack torch (system site-packages) is used as it is
        extra = ["--extra-index-url", index] if index and platform.machine() in ("x86_64", "AMD64") else []
        steps.append(("torch (CPU build)", [TORCH, *extra]))
    steps.append(("transformers, sentencepiece, protobuf, safetensors", list(SUPPORT_PACKAGES)))
    for i, (what, args) in enumerate(steps):
        progress(0.05 + 0.9 * i / len(steps), f"installing {what}")
        _pip(py, ["install", "--disable-pip-version-check", "--progress-bar", "off", *args], cancel)
    got = support(cache)
    if not got.ready:
        raise ConvertError(f"conversion support did not install cleanly: {got.detail}")
    progress(1.0, got.detail)
    return got


def _pip(py: Path, args: list[str], cancel: threading.Event | None) -> None:
    code, out, cancelled = venvs.pip(py, args, cancel)
    if cancelled:
        raise ConvertError("cancelled")
    if code != 0:
        tail = " ".join(out.strip().splitlines()[-3:])[-600:]
        raise ConvertError(f"pip could not install the conversion support: {tail}")


def support_size(cache: Path) -> int:
    """Bytes the conversion support takes on disk."""
    return venvs.size_bytes(venv_dir(cache))


# -- preflight ------------------------------------------------------------------------------------
@dataclass
class Preflight:
    source: Path
    architecture: str
    quant_method: str | None
    base_model: str | None
    weights_bytes: int
    source_dtype: str
    warnings: list[str] = field(default_factory=list)

    def output_bytes(self, outtype: str) -> int:
        """The GGUF's size: parameters (from the weights' bytes and their type) × the output's bytes.
        Packed 4-bit weights (GPTQ and the like) grow when dequantized: ~4.5 bits per parameter."""
        per = 0.5625 if self.quant_method in DEQUANTIZED else DTYPE_BYTES.get(self.source_dtype, 2)
        return int(self.weights_bytes / per * OUTTYPE_BYTES[outtype])


def supported_architectures(llama_cpp: Path) -> set[str]:
    """The Hugging Face architectures llama.cpp's converter registers (read from its source, so
    no torch is needed to ask)."""
    names: set[str] = set()
    files = [llama_cpp / "convert_hf_to_gguf.py", *sorted((llama_cpp / "conversion").glob("*.py"))]
    for f in files:
        if f.is_file():
            for args in _REGISTER_RE.findall(f.read_text(errors="replace")):
                names.update(re.findall(r"[\"']([A-Za-z0-9_]+)[\"']", args))
    return names


def base_model_of(source: Path) -> str | None:
    """``base_model`` from the model card's front matter (README.md), if any."""
    card = source / "README.md"
    if not card.is_file():
        return None
    text = card.read_text(errors="replace")
    m = re.match(r"^---\s*\n(.*?)\n---", text, re.S)
    if not m:
        return None
    block = m.group(1)
    one = re.search(r"^base_model:\s*([\w.\-/]+)\s*$", block, re.M)
    if one:
        return one.group(1)
    many = re.search(r"^base_model:\s*\n\s*-\s*([\w.\-/]+)", block, re.M)
    return many.group(1) if many else None


def preflight(source: Path, llama_cpp: Path, *, weights_needed: bool = True) -> Preflight:
    """Check a checkpoint folder before any work: readable config, a supported architecture, no
    weights the converter cannot read, weights present (unless ``weights_needed`` is False: a
    Hub repo is checked from its config and model card before its weights are fetched). Raises
    ConvertError saying what to do; its ``base_model`` names the model to convert instead."""
    cfg_file = source / "config.json"
    if not cfg_file.is_file():
        raise ConvertError(f"{source}: no config.json: not a Hugging Face checkpoint folder")
    try:
        cfg = json.loads(cfg_file.read_text())
    except ValueError as e:
        raise ConvertError(f"{cfg_file}: not valid JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise ConvertError(f"{cfg_file}: not a JSON object")
    archs = cfg.get("architectures") or []
    arch = str(archs[0]) if archs else ""
    supported = supported_architectures(llama_cpp)
    if not arch:
        raise ConvertError(f'{cfg_file}: names no architecture ("architectures"), so it cannot be converted')
    if supported and arch not in supported:
        raise ConvertError(
            f"architecture {arch} is not supported by llama.cpp's converter (this build knows {len(supported)} "
            "architectures); look for a GGUF of this model on the Hub instead"
        )
    qc = cfg.get("quantization_config") or {}
    method = str(qc.get("quant_method") or "").lower() or None
    base = base_model_of(source)
    warnings = []
    offer = f" Convert the base model instead: {base}." if base else " Convert the unquantized base model instead."
    if method == "awq":
        raise ConvertError(
            "this checkpoint holds AWQ-packed weights: llama.cpp's converter reads original weights, not AWQ's "
            "packed 4-bit ones (a converted file would be broken)." + offer,
            base_model=base,
        )
    if method and method not in DEQUANTIZED:
        raise ConvertError(
            f"weights quantized with {method!r}: llama.cpp's converter cannot read them." + offer, base_model=base
        )
    if method:
        warnings.append(
            f"{method.upper()} weights are dequantized by the converter and quantized again: a GGUF made from the "
            "original weights is better." + offer
        )
    weights = [*source.glob("*.safetensors"), *source.glob("pytorch_model*.bin")]
    if not weights and weights_needed:
        raise ConvertError(f"{source}: no weights (*.safetensors or pytorch_model*.bin)")
    dtype = str(cfg.get("torch_dtype") or cfg.get("dtype") or "float16")
    return Preflight(source, arch, method, base, sum(w.stat().st_size for w in weights), dtype, warnings)


# -- conversion -----------------------------------------------------------------------------------
def fetch_checkpoint(
    repo_id: str,
    dest: Path,
    *,
    revision: str = "main",
    progress: Callable[[float, str], None] = lambda f, d: None,
) -> Path:
    """A Hub repository's config, tokenizer and weights (HF_ENDPOINT, HF_TOKEN honoured)."""
    from huggingface_hub import snapshot_download

    progress(0.0, f"fetching {repo_id}")
    path = snapshot_download(
        repo_id,
        revision=revision,
        local_dir=str(dest),
        allow_patterns=["*.json", "*.safetensors", "tokenizer.model", "*.txt", "README.md", "*.tiktoken"],
        endpoint=os.environ.get("HF_ENDPOINT") or None,
        token=os.environ.get("HF_TOKEN") or None,
    )
    return Path(path)


def convert(
    store: ModelStore,
    source: Path,
    *,
    cache: Path,
    llama_cpp: Path,
    outtype: str = "f16",
    name: str | None = None,
    margin_bytes: int = 1 << 30,
    progress: Callable[[float, str], None] = lambda f, d: None,
    cancel: threading.Event | None = None,
) -> Path:
    """Convert a checkpoint folder into the library; returns the new GGUF's path."""
    if outtype not in OUTTYPES:
        raise ConvertError(f"output type {outtype!r} is not one of {', '.join(OUTTYPES)}")
    pre = preflight(source, llama_cpp)
    sup = support(cache)
    if not sup.ready:
        raise ConvertError(f"conversion support is {sup.detail}")
    out_name = safe_name(name or f"{source.name}-{outtype.upper()}.gguf")
    if not out_name.lower().endswith(".gguf"):
        out_name += ".gguf"
    final = store.ensure_root() / out_name
    if final.exists():
        raise ConvertError(f"{out_name} is already in the library: choose another name")
    need = pre.output_bytes(outtype)
    free = shutil.disk_usage(store.ensure_root()).free
    if need + margin_bytes > free:
        raise ConvertError(space_message(need, free, margin_bytes))
    staging = store.ensure_root() / STAGING
    staging.mkdir(parents=True, exist_ok=True)
    part = staging / (out_name + ".part")
    part.unlink(missing_ok=True)
    argv = [str(sup.python), str(llama_cpp / "convert_hf_to_gguf.py"), str(source)]
    argv += ["--outfile", str(part), "--outtype", outtype]
    progress(0.01, f"{pre.architecture}: loading")
    try:
        _run_converter(argv, llama_cpp, progress, cancel)
        if cancel is not None and cancel.is_set():
            raise ConvertError("cancelled")
        validate_gguf(part)
        check_complete(part)
        os.replace(part, final)
    finally:
        part.unlink(missing_ok=True)
    progress(1.0, f"{out_name}: {final.stat().st_size / 2**20:.0f} MiB")
    return final


def check_complete(path: Path) -> None:
    """The converted file has tensors for every layer its metadata declares. The converter writes
    what it finds: a config that claims more layers than the weights hold gives a file llama.cpp
    refuses at load, which must not reach the library."""
    from zoe_panel.models.gguf_meta import read_gguf

    info = read_gguf(path)
    declared = info.arch_key("block_count")
    missing = [i for i, n in enumerate(info.layer_tensor_bytes) if n == 0]
    if isinstance(declared, int) and len(info.layer_tensor_bytes) < declared:
        missing += list(range(len(info.layer_tensor_bytes), declared))
    if missing:
        raise ConvertError(
            f"the converted file has no weights for layer {missing[0]} of {declared}: the checkpoint's config.json "
            "and its weights disagree (nothing was added to the library)"
        )
    if not info.token_embd_bytes:
        raise ConvertError("the converted file has no token embeddings: not a usable model (nothing was added)")


def _run_converter(
    argv: list[str], cwd: Path, progress: Callable[[float, str], None], cancel: threading.Event | None
) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_MININTERVAL": "0.5"}
    proc = subprocess.Popen(
        argv, cwd=str(cwd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    watcher = venvs.kill_on_cancel(proc, cancel)
    tail: list[str] = []
    buf = b""
    assert proc.stdout is not None
    while True:
        chunk = proc.stdout.read1(4096) if hasattr(proc.stdout, "read1") else proc.stdout.read(4096)
        if not chunk:
            break
        buf += chunk
        *lines, buf = re.split(rb"[\r\n]", buf)
        for raw in lines:
            line = raw.decode(errors="replace").strip()
            if not line:
                continue
            tail = (tail + [line])[-20:]
            pct = _PERCENT_RE.search(line)
            if "Writing" in line and pct:
                progress(0.1 + 0.85 * int(pct.group(1)) / 100, f"writing {pct.group(1)} %")
            elif line.startswith("INFO:hf-to-gguf:") and "Loading model" in line:
                progress(0.05, "loading the checkpoint")
    proc.wait()
    watcher.set()
    if cancel is not None and cancel.is_set():
        raise ConvertError("cancelled")
    if proc.returncode != 0:
        reason = next((t for t in reversed(tail) if "Error" in t or "error" in t or "not supported" in t), "")
        raise ConvertError(
            "llama.cpp's converter failed" + (f": {reason[-400:]}" if reason else f" (exit {proc.returncode})")
        )


def cleanup_fetch(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
