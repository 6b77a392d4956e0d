"""Download GGUF files from the Hugging Face Hub with ``huggingface_hub`` (HF_ENDPOINT and HF_TOKEN
honoured).

Files land in a hidden staging folder inside the models folder (same filesystem, so the final
rename is atomic), are checked against the sha256 the Hub publishes (hashed while they arrive) and
parsed as GGUF, and only then renamed into the library. An interrupted transfer resumes from the staging folder;
Cancel and errors (a full disk, a bad checksum) leave nothing behind.
"""

from __future__ import annotations

import errno
import io
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from zoe_panel.errors import DownloadError, ModelStoreError
from zoe_panel.models.demo import sha256_file
from zoe_panel.models.gguf_meta import check_magic
from zoe_panel.models.hf_staging import FollowHash, drop_unresumable, resumable
from zoe_panel.models.library import VerifyLog, safe_name, space_message, validate_gguf
from zoe_panel.models.store import SPLIT_RE, ModelStore

QUANT_RE = re.compile(r"(?:^|[-_.])((?:IQ|Q)\d(?:_[A-Z0-9]+)*|F16|BF16|F32|MXFP4)(?=[-_.]|$)", re.I)
STAGING = ".downloads"


class DownloadCancelled(DownloadError):
    pass


@dataclass(frozen=True)
class RemoteFile:
    name: str  # path in the repo
    size: int
    sha256: str | None


@dataclass(frozen=True)
class RemoteModel:
    """One loadable model: a single GGUF, or all parts of a split one."""

    label: str
    files: tuple[RemoteFile, ...]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def quant(self) -> str:
        m = QUANT_RE.search(Path(self.files[0].name).stem)
        return m.group(1).upper() if m else "?"


def hub_api(endpoint: str | None = None, token: str | None = None):  # type: ignore[no-untyped-def]
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint or os.environ.get("HF_ENDPOINT") or None, token=token or os.environ.get("HF_TOKEN"))


def group_gguf(files: list[RemoteFile]) -> list[RemoteModel]:
    """GGUF files of a repo as models; ``x-00001-of-00003.gguf`` parts become one model."""
    singles: list[RemoteModel] = []
    splits: dict[tuple[str, int], list[RemoteFile]] = {}
    for f in files:
        if not f.name.lower().endswith(".gguf"):
            continue
        m = SPLIT_RE.match(f.name)
        if m:
            splits.setdefault((m["base"], int(m["n"])), []).append(f)
        else:
            singles.append(RemoteModel(f.name, (f,)))
    for (base, n), parts in splits.items():
        parts.sort(key=lambda f: f.name)
        label = f"{base}.gguf ({len(parts)}/{n} parts)"
        singles.append(RemoteModel(label, tuple(parts)))
    return sorted(singles, key=lambda m: m.label)


def list_gguf(
    repo_id: str, *, revision: str = "main", endpoint: str | None = None, token: str | None = None
) -> list[RemoteModel]:
    models = group_gguf(repo_files(repo_id, revision=revision, endpoint=endpoint, token=token)[0])
    if not models:
        raise DownloadError(f"{repo_id} has no .gguf files")
    return models


def repo_files(
    repo_id: str, *, revision: str = "main", endpoint: str | None = None, token: str | None = None
) -> tuple[list[RemoteFile], str]:
    """A repo's files with sizes and LFS sha256, and the commit they are at; clear errors for a
    repo that is not there, private, or unreachable."""
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    _check_repo_id(repo_id)
    try:
        info = hub_api(endpoint, token).model_info(repo_id, revision=revision, files_metadata=True)
    except RepositoryNotFoundError:
        raise DownloadError(f"repository {repo_id} not found (or private: set HF_TOKEN)") from None
    except (HfHubHTTPError, OSError) as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status == 404:
            raise DownloadError(f"repository {repo_id} (revision {revision}) not found") from None
        if status == 401:
            raise DownloadError(f"{repo_id}: the Hub wants a valid token (set HF_TOKEN)") from None
        raise DownloadError(f"cannot list {repo_id}: {_first_line(e)}") from None
    files = [RemoteFile(s.rfilename, int(s.size or 0), s.lfs.sha256 if s.lfs else None) for s in info.siblings or []]
    return files, str(info.sha or "")


def _check_repo_id(repo_id: str) -> None:
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id or "") or ".." in repo_id:
        raise DownloadError(f"{repo_id!r} is not a repository id (owner/name)")


def _first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0][:300]


def _progress_class(on_bytes: Callable[[int], None], cancel: threading.Event) -> type:
    from tqdm.std import tqdm

    class Progress(tqdm):  # type: ignore[misc]
        """huggingface_hub reports bytes through its tqdm class; we count them and honour Cancel."""

        def __init__(self, *args: object, **kwargs: object) -> None:
            kwargs["file"] = io.StringIO()  # no terminal output from a server
            kwargs.pop("disable", None)
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            if cancel.is_set():
                raise DownloadCancelled("download cancelled")
            out: bool | None = super().update(n)
            on_bytes(int(n or 0))
            return out

    return Progress


def download(
    store: ModelStore,
    repo_id: str,
    model: RemoteModel,
    *,
    revision: str = "main",
    endpoint: str | None = None,
    token: str | None = None,
    margin_bytes: int = 1 << 30,
    progress: Callable[[int, int], None] = lambda done, total: None,
    cancel: threading.Event | None = None,
    verify_log: VerifyLog | None = None,
) -> list[Path]:
    """Download every file of ``model`` into the library; return the final paths. With
    ``verify_log``, a download whose every file matched the Hub's sha256 is recorded as verified."""
    _check_repo_id(repo_id)
    cancel = cancel or threading.Event()
    root = store.ensure_root().resolve()
    targets = [_target(root, f.name) for f in model.files]
    for t in targets:
        if t.exists():
            raise DownloadError(f"{t.name} is already in the library")
    check_space(root, model.size, margin_bytes)
    # one staging folder per model, so two downloads from one repo never touch each other's files
    staging = root / STAGING / re.sub(r"[^\w.-]", "_", f"{repo_id}--{model.label}")
    staging.mkdir(parents=True, exist_ok=True)
    fetched, digests = fetch_files(
        repo_id,
        model.files,
        staging,
        revision=revision,
        endpoint=endpoint,
        token=token,
        cancel=cancel,
        progress=progress,
        check=check_magic,  # every part of a split model is a GGUF file with its own header
    )
    for src, dst in zip(fetched, targets, strict=True):
        os.replace(src, dst)
    _discard(staging)
    if verify_log is not None and all(digests):
        record_checked(verify_log, store, targets[0], [d for d in digests if d])
    return targets


def fetch_files(
    repo_id: str,
    files: tuple[RemoteFile, ...] | list[RemoteFile],
    staging: Path,
    *,
    revision: str,
    endpoint: str | None,
    token: str | None,
    cancel: threading.Event,
    progress: Callable[[int, int], None],
    check: Callable[[Path], object],
) -> tuple[list[Path], list[str | None]]:
    """Fetch ``files`` of a repo into ``staging`` with progress and Cancel, each checked against the
    Hub's sha256 and by ``check``. On failure the staging folder goes, unless a transfer can resume."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError

    total = sum(f.size for f in files)
    done = [0]

    def on_bytes(n: int) -> None:
        done[0] += n
        progress(done[0], total)

    fetched: list[Path] = []
    digests: list[str | None] = []
    follower: FollowHash | None = None
    drop_unresumable(staging)
    try:
        try:
            for f in files:
                before = done[0]
                follower = FollowHash(staging, f.size)
                path = Path(
                    hf_hub_download(
                        repo_id,
                        f.name,
                        revision=revision,
                        local_dir=staging,
                        endpoint=endpoint or os.environ.get("HF_ENDPOINT") or None,
                        token=token or os.environ.get("HF_TOKEN"),
                        tqdm_class=_progress_class(on_bytes, cancel),
                    )
                )
                streamed, follower = follower.result(), None
                done[0] = before + f.size  # resumed bytes were counted before this run
                progress(done[0], total)
                fetched.append(path)
                digests.append(_verify(path, f, streamed, check))
        finally:
            if follower is not None:
                follower.abandon()  # stop following before the staging folder goes
    except DownloadCancelled:
        _discard(staging)
        raise
    except OSError as e:
        _discard(staging)
        if e.errno == errno.ENOSPC:
            raise DownloadError(
                f"the disk filled up during the download of {repo_id}: nothing was kept; free space and try again"
            ) from None
        raise DownloadError(f"download of {repo_id} failed: {_first_line(e)}") from None
    except HfHubHTTPError as e:
        if resumable(staging):
            raise DownloadError(
                f"download of {repo_id} failed: {_first_line(e)} (partial data kept to resume)"
            ) from None
        _discard(staging)
        raise DownloadError(f"download of {repo_id} failed: {_first_line(e)}; nothing was kept") from None
    except (DownloadError, ModelStoreError):
        _discard(staging)  # a refused file leaves no staging folder behind
        raise
    except BaseException:
        _discard(staging)
        raise
    return fetched, digests


def record_checked(log: VerifyLog, store: ModelStore, path: Path, digests: list[str]) -> None:
    """A download that matched the Hub's checksums counts as a verification: record it, so the
    Models page shows the file as checked without hashing it a second time."""
    try:
        for part in store.split_parts(path):
            validate_gguf(part, part.name)
    except ModelStoreError as e:
        ok, error = False, str(e)
    else:
        ok, error = True, ""
    st = path.stat()
    log.record(
        str(path.resolve()),
        {
            "name": path.name,
            "checked_at": time.time(),
            "ok": ok,
            "error": error,
            "sha256": digests,
            "source": "download (matches the Hub's sha256)",
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
        },
    )


def _target(root: Path, name: str) -> Path:
    base = Path(name).name  # repo sub-folders are flattened; '..' can never escape
    return root / safe_name(base)  # .gguf, not hidden, no control characters, not too long


def check_space(root: Path, need: int, margin: int) -> None:
    free = shutil.disk_usage(root).free
    if need + margin > free:
        raise DownloadError(space_message(need, free, margin))


def _verify(path: Path, f: RemoteFile, streamed: str | None, check: Callable[[Path], object]) -> str | None:
    """Check the Hub's checksum and the file's own format; return the verified sha256 (None: no checksum)."""
    digest = None
    if f.sha256:
        digest = streamed
        if digest != f.sha256:
            digest = sha256_file(path)  # no streamed digest, or one that might have followed a restart
        if digest != f.sha256:
            path.unlink(missing_ok=True)
            raise DownloadError(
                f"{f.name}: checksum mismatch (Hub says sha256 {f.sha256[:16]}…, downloaded file "
                f"has {digest[:16]}…): the file was deleted; download it again"
            )
    try:
        check(path)
    except ModelStoreError:
        path.unlink(missing_ok=True)
        raise
    return digest


def _discard(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.parent.rmdir()  # .downloads itself, once no other download uses it
    except OSError:
        pass
