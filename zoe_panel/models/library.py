"""Changing the library: add a local file or an upload, delete, verify. Everything is checked
before it enters the models folder (GGUF magic, version, a header that parses, tensor data that
fits in the file), staged in a hidden folder of the same filesystem and renamed into place, so a
failure (bad file, full disk) leaves the library as it was."""

from __future__ import annotations

import errno
import os
import shutil
import time
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from filelock import FileLock

from zoe_panel.errors import InvalidModelError, ModelStoreError
from zoe_panel.jsonfile import read_cache, write_json_atomic
from zoe_panel.models.demo import sha256_file
from zoe_panel.models.gguf_meta import read_gguf
from zoe_panel.models.store import ModelStore

STAGING = ".staging"
MAX_NAME_BYTES = 255


def shown(name: str, limit: int = 60) -> str:
    """A name quoted for a message, cut to ``limit`` characters (a 5000-character name stays readable)."""
    text = repr(name)
    return text if len(text) <= limit else text[: limit - 5] + "…'"


def safe_name(name: str) -> str:
    """A file name for the library: one path component, .gguf, not hidden, printable, at most 255
    bytes. Unicode and spaces are fine; control characters and line breaks are not (names are shown
    on pages and in logs)."""
    text = (name or "").strip()
    if len(text.encode()) > MAX_NAME_BYTES:
        raise ModelStoreError(
            f"the name {shown(text)} is {len(text):,} characters ({len(text.encode()):,} bytes) long; "
            f"file names can have at most {MAX_NAME_BYTES} bytes"
        )
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in text):
        raise ModelStoreError(f"{shown(text)}: names may not contain control characters or line breaks")
    if not text or "/" in text or "\\" in text or text in (".", ".."):
        raise ModelStoreError(f"{shown(name)} is not a valid file name (no folders, no '..')")
    if text.startswith("."):
        raise ModelStoreError(f"{shown(name)}: names starting with '.' are reserved")
    if not text.lower().endswith(".gguf"):
        raise ModelStoreError(f"{shown(name)}: model files must end in .gguf")
    return text


def validate_gguf(path: Path, display: str | None = None) -> None:
    """Raise InvalidModelError unless the file is a complete, parseable GGUF."""
    info = read_gguf(path, display)
    if info.is_truncated:
        raise InvalidModelError(
            f"{display or path.name}: truncated or corrupt: its tensors need {info.tensor_data_end:,} bytes, "
            f"the file has {info.file_size_bytes:,}"
        )


def staging_dir(store: ModelStore) -> Path:
    d = store.ensure_root() / STAGING
    d.mkdir(exist_ok=True)
    return d


def space_message(need: int, free: int, margin: int) -> str:
    return (
        f"not enough disk space: {need / 2**30:.2f} GiB needed, {free / 2**30:.2f} GiB free, "
        f"{margin / 2**30:.2f} GiB must stay free; delete a model or free space first"
    )


def check_space(store: ModelStore, need: int, margin: int) -> None:
    free = shutil.disk_usage(store.ensure_root()).free
    if need + margin > free:
        raise ModelStoreError(space_message(need, free, margin))


def _disk_full(e: OSError, what: str) -> ModelStoreError:
    if e.errno == errno.ENOSPC:
        return ModelStoreError(f"the disk filled up while {what}: nothing was added; free space and try again")
    return ModelStoreError(f"{what} failed: {e.strerror or e}")


def commit_staged(store: ModelStore, staged: Path, name: str) -> Path:
    target = store.ensure_root() / name
    try:
        os.link(staged, target)  # fails if the name was taken meanwhile: never overwrite
    except FileExistsError:
        staged.unlink(missing_ok=True)
        raise ModelStoreError(f"{name} is already in the library") from None
    staged.unlink()
    return target


def add_file(
    store: ModelStore, src: Path, *, move: bool = False, name: str | None = None, margin_bytes: int = 0
) -> Path:
    """Copy (or move) a GGUF file into the library after checking it. A symlink is followed: the
    file it points to is copied (or moved, and the link that would dangle removed), never the link."""
    src = Path(src).expanduser()
    if not src.is_file():
        raise ModelStoreError(f"{src} is not a file")
    link = src if src.is_symlink() else None
    final = safe_name(name or src.name)
    src = src.resolve()
    if (store.ensure_root() / final).exists():
        raise ModelStoreError(f"{final} is already in the library")
    validate_gguf(src, str(src))
    staged = staging_dir(store) / (final + ".part")
    try:
        if move:
            try:
                os.replace(src, staged)
            except OSError as e:
                if e.errno != errno.EXDEV:
                    raise
                check_space(store, src.stat().st_size, margin_bytes)
                shutil.copyfile(src, staged)
                src.unlink()
            if link is not None:
                link.unlink(missing_ok=True)
        else:
            check_space(store, src.stat().st_size, margin_bytes)
            shutil.copyfile(src, staged)
    except OSError as e:
        staged.unlink(missing_ok=True)
        raise _disk_full(e, f"adding {final}") from None
    return commit_staged(store, staged, final)


def add_upload(
    store: ModelStore, name: str, chunks: Iterable[bytes], *, size: int | None = None, margin_bytes: int = 0
) -> Path:
    """Write an upload to the staging folder, check it as GGUF, then rename it into the library."""
    final = safe_name(name)
    if (store.ensure_root() / final).exists():
        raise ModelStoreError(f"{final} is already in the library")
    if size is not None:
        check_space(store, size, margin_bytes)
    staged = staging_dir(store) / (final + ".part")
    try:
        with staged.open("wb") as out:
            for chunk in chunks:
                out.write(chunk)
        validate_gguf(staged, final)
    except OSError as e:
        staged.unlink(missing_ok=True)
        raise _disk_full(e, f"receiving {final}") from None
    except InvalidModelError:
        staged.unlink(missing_ok=True)
        raise
    return commit_staged(store, staged, final)


def delete(store: ModelStore, name: str, *, in_use: str | None = None) -> list[Path]:
    """Delete a model (every part of a split one); refuse the one the running engine uses."""
    path = store.resolve(name)
    if path.is_dir():  # a Hugging Face folder: the running engine may serve it, or the GGUF it was made from
        from zoe_panel.engine.flavors.vllm import hf_dir

        if in_use and path in (Path(in_use).resolve(), hf_dir(Path(in_use).resolve())):
            raise ModelStoreError(f"{name} is served by the running engine: stop the engine first")
        shutil.rmtree(path)
        return [path]
    if in_use and Path(in_use).resolve() in [p.resolve() for p in store.split_parts(path)]:
        raise ModelStoreError(f"{name} is used by the running engine: stop the engine first")
    removed = []
    for part in store.split_parts(path):
        if part.is_file():
            real = part.resolve()
            part.unlink()
            store.forget(real)
            removed.append(part)
    return removed


class VerifyLog:
    """sha256 results per file, kept in the state folder: a check survives restarts."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any]:
        return read_cache(self.path, dict)

    def record(self, key: str, result: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path) + ".lock", timeout=10):
            data = self.load()
            data[key] = result
            write_json_atomic(self.path, data, indent=1)

    def get(self, path: Path) -> dict[str, Any] | None:
        rec = self.load().get(str(path.resolve()))
        if not rec:
            return None
        st = path.stat()
        return rec if rec.get("size") == st.st_size and rec.get("mtime_ns") == st.st_mtime_ns else None


def verify(store: ModelStore, name: str, log: VerifyLog) -> dict[str, Any]:
    """Hash every part and re-check the GGUF structure; record and return the result."""
    path = store.resolve(name)
    result: dict[str, Any] = {"name": name, "checked_at": time.time(), "ok": True, "error": "", "sha256": []}
    if path.is_dir():  # a Hugging Face folder: every weights header against its file (hashes: at download)
        from zoe_panel.models.hf_model import read_hf_model

        try:
            read_hf_model(path)
        except InvalidModelError as e:
            result.update(ok=False, error=str(e))
    for part in [] if path.is_dir() else store.split_parts(path):
        if not part.is_file():
            result.update(ok=False, error=f"missing part {part.name}")
            break
        result["sha256"].append(sha256_file(part))
        try:
            validate_gguf(part, part.name)
        except InvalidModelError as e:
            result.update(ok=False, error=str(e))
    st = path.stat()
    result.update(size=st.st_size, mtime_ns=st.st_mtime_ns)
    log.record(str(path.resolve()), result)
    return result
