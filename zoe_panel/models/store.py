"""The models folder: list, resolve names safely, read metadata (cached), add, delete, verify.

Every name a user gives is resolved inside the models folder; ``../x.gguf``, absolute paths
elsewhere and symlinks that lead out are refused, so no page or CLI call can read or delete
files outside it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from zoe_panel.engine.flavors.vllm import HF_SUFFIX
from zoe_panel.errors import InvalidModelError, ModelStoreError
from zoe_panel.jsonfile import read_cache, write_json_atomic
from zoe_panel.models.gguf_meta import GGUFInfo, read_gguf
from zoe_panel.models.hf_model import HfModel, read_hf_model
from zoe_panel.models.shape import model_shape

# Bumped when GGUFInfo gains fields: cached records of an older reader are read again.
READER_VERSION = 3

GGUF_SUFFIX = ".gguf"
MAX_CACHE_ENTRIES = 512  # metadata records kept (one per file); the least recently used go first
SPLIT_RE = re.compile(r"^(?P<base>.+)-(?P<i>\d{5})-of-(?P<n>\d{5})\.gguf$", re.I)


def merge_split(infos: list[GGUFInfo]) -> GGUFInfo:
    """One GGUFInfo for a split model: metadata of the first part, tensors and bytes of all parts.
    A part is truncated if its own tensors run past its own end."""
    first = infos[0]
    layers: list[int] = []
    for info in infos:
        for i, n in enumerate(info.layer_tensor_bytes):
            if i >= len(layers):
                layers.extend([0] * (i + 1 - len(layers)))
            layers[i] += n
    worst = max(infos, key=lambda i: i.tensor_data_end - i.file_size_bytes)
    matrices: dict[str, list[int]] = {}
    for info in infos:
        for name, (b8, b4) in info.matrix_bytes.items():
            entry = matrices.setdefault(name, [0, 0])
            entry[0] += b8
            entry[1] += b4
    return dataclasses.replace(
        first,
        file_size_bytes=sum(i.file_size_bytes for i in infos),
        tensor_count=sum(i.tensor_count for i in infos),
        tensor_bytes=sum(i.tensor_bytes for i in infos),
        parameter_count=sum(i.parameter_count for i in infos),
        layer_tensor_bytes=layers,
        other_tensor_bytes=sum(i.other_tensor_bytes for i in infos),
        output_tensor_bytes=sum(i.output_tensor_bytes for i in infos),
        token_embd_bytes=sum(i.token_embd_bytes for i in infos),
        matrix_bytes=matrices,
        # keep "truncated" meaningful: compare the worst part's end with that part's size
        tensor_data_end=sum(i.file_size_bytes for i in infos) + (worst.tensor_data_end - worst.file_size_bytes),
    )


@dataclass(frozen=True)
class ModelEntry:
    name: str  # relative to the models folder, with forward slashes
    path: Path
    size_bytes: int
    info: GGUFInfo | None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.info is not None and not self.error


@dataclass(frozen=True)
class HfEntry:
    """A Hugging Face folder in the library (vLLM serves it)."""

    name: str  # relative to the models folder, ends in .hf
    path: Path
    size_bytes: int
    model: HfModel | None
    error: str = ""
    made_from: str = ""  # the library GGUF it was made from ("" = downloaded)

    @property
    def ok(self) -> bool:
        return self.model is not None and not self.error


def quant_name(file_type: Any) -> str:
    """general.file_type -> 'Q4_K_M' etc. (gguf.LlamaFileType without its MOSTLY_ prefix)."""
    if file_type is None:
        return "?"
    from gguf import LlamaFileType

    try:
        name = LlamaFileType(int(file_type)).name
    except (ValueError, TypeError):
        return f"type {file_type}"
    return name.replace("MOSTLY_", "").replace("ALL_", "")


def human_count(n: int) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.1f}{unit}" if n / div < 100 else f"{n / div:.0f}{unit}"
    return str(n)


def describe(info: GGUFInfo) -> dict[str, Any]:
    """The row the Models page and ``models --json`` show for one file."""
    shape = model_shape(info)
    kv_heads = sorted({la.n_head_kv for la in shape.layers}) or [0]
    head = shape.layers[0].head_k if shape.layers else 0
    return {
        "architecture": info.architecture,
        "display_name": info.get("general.name", ""),
        "size_label": info.get("general.size_label") or human_count(info.parameter_count),
        "parameters": info.parameter_count,
        "quantization": quant_name(info.get("general.file_type")),
        "layers": shape.n_layer,
        "kv_heads": kv_heads[0] if len(kv_heads) == 1 else f"{kv_heads[0]}-{kv_heads[-1]}",
        "head_size": head,
        "context_train": shape.n_ctx_train,
        "sliding_window": shape.n_swa or None,
        "file_size_bytes": info.file_size_bytes,
        "gguf_version": info.gguf_version,
    }


class ModelStore:
    def __init__(self, root: Path, cache_file: Path) -> None:
        self.root = root
        self.cache_file = cache_file
        self._lock = threading.Lock()
        self._mem: dict[str, dict[str, Any]] | None = None

    # -- names and paths ------------------------------------------------------------------
    def ensure_root(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root

    def resolve(self, name_or_path: str) -> Path:
        """A file inside the models folder, or ModelStoreError saying why not."""
        text = (name_or_path or "").strip()
        if not text:
            raise ModelStoreError("no model name given")
        if "\x00" in text:
            raise ModelStoreError("model name contains a NUL byte")
        root = self.root.resolve()
        candidate = Path(text).expanduser()
        if not candidate.is_absolute():
            if any(part == ".." for part in Path(text).parts):
                raise ModelStoreError(f"{text!r}: '..' is not allowed in model names")
            candidate = root / candidate
        real = candidate.resolve()
        if real != root and root not in real.parents:
            raise ModelStoreError(
                f"{text} is outside the models folder {root}; add it first (python -m zoe_panel add {text})"
            )
        if real.name.endswith(HF_SUFFIX) and real.is_dir():
            return real  # a Hugging Face folder (vLLM's): the folder is the model
        if not real.is_file():
            raise ModelStoreError(f"model {text!r} not found in {root}")
        return real

    def name_of(self, path: Path) -> str:
        return path.resolve().relative_to(self.root.resolve()).as_posix()

    # -- listing ----------------------------------------------------------------------------
    def entries(self) -> list[ModelEntry]:
        if not self.root.is_dir():
            return []
        root = self.root.resolve()
        entries = []
        for path in sorted(self.root.rglob("*")):
            if path.suffix.lower() != GGUF_SUFFIX or not path.is_file():
                continue
            if any(part.startswith(".") for part in path.relative_to(self.root).parts):
                continue  # staging folders (.downloads) and hidden files are not part of the library
            m = SPLIT_RE.match(path.name)
            if m and int(m["i"]) != 1:
                continue  # listed with its first part
            real = path.resolve()
            if root not in real.parents:
                continue  # a symlink that leads out of the folder is not part of the library
            entries.append(self.entry(real))
        return entries

    def hf_entries(self) -> list[HfEntry]:
        """The Hugging Face folders (``*.hf``) vLLM serves: downloaded, or made beside a GGUF."""
        if not self.root.is_dir():
            return []
        root = self.root.resolve()
        out = []
        for path in sorted(self.root.rglob("*" + HF_SUFFIX)):
            rel = path.relative_to(self.root).parts
            if not path.is_dir() or any(part.startswith(".") for part in rel):
                continue
            if any(part.endswith(HF_SUFFIX) for part in rel[:-1]):
                continue  # a folder inside a model folder is part of that model
            real = path.resolve()
            if root not in real.parents:
                continue
            out.append(self.hf_entry(real))
        return out

    def hf_entry(self, path: Path) -> HfEntry:
        name = self.name_of(path)
        gguf = path.with_name(path.name.removesuffix(HF_SUFFIX) + GGUF_SUFFIX)
        made_from = gguf.name if gguf.is_file() else ""
        try:
            model = read_hf_model(path)
        except (InvalidModelError, OSError) as e:
            size = sum(p.stat().st_size for p in path.iterdir() if p.is_file())
            return HfEntry(name, path, size, None, str(e), made_from)
        return HfEntry(name, path, model.size_bytes, model, "", made_from)

    def split_parts(self, first: Path) -> list[Path]:
        """All files of a split model given its first part (``x-00001-of-00003.gguf``)."""
        m = SPLIT_RE.match(first.name)
        if not m:
            return [first]
        n = int(m["n"])
        return [first.with_name(f"{m['base']}-{i:05d}-of-{n:05d}.gguf") for i in range(1, n + 1)]

    def entry(self, path: Path) -> ModelEntry:
        name = self.name_of(path)
        parts = self.split_parts(path)
        missing = [p.name for p in parts if not p.is_file()]
        size = sum(p.stat().st_size for p in parts if p.is_file())
        if missing:
            return ModelEntry(name, path, size, None, f"{name}: split model is missing {', '.join(missing)}")
        try:
            info = merge_split([self.info(p) for p in parts]) if len(parts) > 1 else self.info(path)
        except InvalidModelError as e:
            return ModelEntry(name, path, size, None, str(e))
        error = ""
        if info.is_truncated:
            error = (
                f"{name}: truncated or corrupt: tensor data runs to byte {info.tensor_data_end:,} "
                f"but the file has {info.file_size_bytes:,} bytes; download it again"
            )
        return ModelEntry(name, path, size, info, error)

    def names(self) -> list[str]:
        return [e.name for e in self.entries() if e.ok]

    # -- metadata cache ---------------------------------------------------------------------
    def info(self, path: Path) -> GGUFInfo:
        if path.is_dir():
            raise InvalidModelError(
                f"{path.name} is a Hugging Face folder, which vLLM serves: this needs a GGUF file (llama.cpp)"
            )
        st = path.stat()
        key = str(path.resolve())
        stamp = [st.st_size, st.st_mtime_ns, READER_VERSION]
        with self._lock:
            cache = self._load_cache()
            hit = cache.get(key)
            if hit and hit.get("stamp") == stamp:
                if "error" in hit:
                    raise InvalidModelError(hit["error"])
                return GGUFInfo.from_json(hit["info"])
        try:
            info = read_gguf(path)
            record: dict[str, Any] = {"stamp": stamp, "info": info.to_json()}
        except InvalidModelError as e:
            record = {"stamp": stamp, "error": str(e)}
            self._store(key, record)
            raise
        self._store(key, record)
        return info

    def _load_cache(self) -> dict[str, dict[str, Any]]:
        if self._mem is None:
            self._mem = read_cache(self.cache_file, dict)
        return self._mem

    def _store(self, key: str, record: dict[str, Any] | None) -> None:
        """Put (or, with None, drop) one record; the file is merged with other processes' entries,
        entries of files that are gone are pruned, and at most MAX_CACHE_ENTRIES are kept."""
        with self._lock:
            try:
                self.cache_file.parent.mkdir(parents=True, exist_ok=True)
                with FileLock(str(self.cache_file) + ".lock", timeout=10):
                    on_disk = read_cache(self.cache_file, dict)
                    on_disk.update(self._load_cache())
                    if record is None:
                        on_disk.pop(key, None)
                    else:
                        on_disk[key] = {**record, "used": time.time()}
                    self._mem = _pruned(on_disk)
                    write_json_atomic(self.cache_file, self._mem)
            except OSError:
                pass  # an unwritable cache only costs a re-read next time

    def forget(self, path: Path) -> None:
        """Drop a deleted file's metadata from the cache."""
        key = str(path.resolve())
        with self._lock:
            self._load_cache().pop(key, None)
        self._store(key, None)


def _pruned(cache: dict[str, Any]) -> dict[str, Any]:
    alive = {k: v for k, v in cache.items() if isinstance(v, dict) and os.path.exists(k)}
    if len(alive) <= MAX_CACHE_ENTRIES:
        return alive
    newest = sorted(alive.items(), key=lambda kv: float(kv[1].get("used", 0)), reverse=True)
    return dict(newest[:MAX_CACHE_ENTRIES])
