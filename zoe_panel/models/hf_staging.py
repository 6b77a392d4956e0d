"""What the panel knows of huggingface_hub's staging folder (``local_dir``): where its temporary
files live, which of them it can resume, and a sha256 that follows one while it is written."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from pathlib import Path


def temporaries(staging: Path) -> list[Path]:
    """huggingface_hub's temporary files under a ``local_dir`` download folder."""
    folder = staging / ".cache" / "huggingface" / "download"
    try:
        return list(folder.rglob("*.incomplete")) if folder.is_dir() else []
    except OSError:
        return []


# huggingface_hub names its temporary file "<hash>.<etag>.incomplete" where it resumes a transfer
# across calls, and "<hash>.<etag>.<8 hex>.incomplete" (one per process) where it does not: it
# only resumes within one call then. Files of the second kind can never be continued.
_UNRESUMABLE_RE = re.compile(r"^[^.]+\.[^.]+\.[0-9a-f]{8}\.incomplete$")


def resumable(staging: Path) -> bool:
    for p in temporaries(staging):
        try:
            if not _UNRESUMABLE_RE.match(p.name) and p.stat().st_size > 0:
                return True
        except OSError:
            continue
    return False


def drop_unresumable(staging: Path) -> None:
    for p in temporaries(staging):
        if _UNRESUMABLE_RE.match(p.name):
            p.unlink(missing_ok=True)


class FollowHash:
    """sha256 of the file huggingface_hub is writing, computed while it writes.

    Hashing after the download re-reads the whole file: for a model larger than the page cache, or
    on a Jetson's SD card, that is a second pass over the disk. Following the temporary file as it
    grows hashes data that is still in memory, hidden behind the network. The digest is only
    used when it covers exactly the expected size; anything else (huggingface_hub laid its
    temporary files out differently, a transfer restarted from zero, the file was already there)
    gives None and the caller hashes the finished file instead.
    """

    def __init__(self, staging: Path, size: int) -> None:
        self.staging = staging
        self.size = size
        self.since = time.time() - 1.0
        self.done = threading.Event()
        self.digest = hashlib.sha256()
        self.read = 0
        self.ok = False
        self.thread = threading.Thread(target=self._run, name="zoe-download-hash", daemon=True)
        self.thread.start()

    def _find(self) -> Path | None:
        found = []
        for p in temporaries(self.staging):
            try:
                if p.stat().st_mtime >= self.since:
                    found.append(p)
            except OSError:
                continue  # renamed between the listing and the stat
        return found[0] if len(found) == 1 else None

    def _run(self) -> None:
        path = None
        while path is None:
            if self.done.is_set():
                return
            path = self._find()
            if path is None:
                self.done.wait(0.05)
        try:
            f = path.open("rb")  # the open file survives huggingface_hub's final rename
        except OSError:
            return
        with f:
            while True:
                block = f.read(1 << 20)
                if block:
                    self.digest.update(block)
                    self.read += len(block)
                elif self.done.is_set():
                    break  # the writer has closed the file: everything is visible
                else:
                    self.done.wait(0.02)
        self.ok = self.read == self.size

    def result(self) -> str | None:
        self.done.set()
        self.thread.join()
        return self.digest.hexdigest() if self.ok else None

    def abandon(self) -> None:
        self.done.set()
        self.thread.join(timeout=5)
