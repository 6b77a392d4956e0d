"""The one place JSON files are written and read back.

Writes are atomic (a temporary file in the same folder, then ``os.replace``), so a crash or a full
disk never leaves half a file. A file holding a secret (an API key, a token) is created 0600 from
the start, never chmod-ed after the fact, and its folder is made 0700.

Reads are shape-checked: the panel's own state is read with :func:`read_state`, which names the
file and how to reset it when the content is not what it should be (never a traceback); caches are
read with :func:`read_cache`, which treats a damaged file as empty, since it can be rebuilt.
Standard library only (the build scripts use it before the panel's requirements exist).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T", dict, list)  # type: ignore[type-arg]


class StateFileError(ValueError):
    """A state file exists but is not what the panel wrote. The message says how to reset it."""

    def __init__(self, path: Path, why: str) -> None:
        self.path = path
        super().__init__(
            f"{path} is damaged ({why}); the panel cannot use it. Reset it by moving it aside: "
            f"mv '{path}' '{path}.bad' (the panel then starts from an empty one)"
        )


def make_private_dir(path: Path) -> Path:
    """A folder only the owner can enter (state folders hold keys and engine commands)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.chmod(path, 0o700)
    except OSError:  # not ours (a shared mount): leave it
        pass
    return path


def write_json_atomic(path: Path, data: Any, *, secret: bool = False, indent: int | None = None) -> None:
    """Replace ``path`` with ``data`` as JSON in one step; 0600 when ``secret``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; widen only what holds no secret, to what the umask allows.
        if not secret:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=indent)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _load(path: Path) -> Any:
    raw = path.read_bytes()
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 text at byte {e.start}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON: {e.msg} at line {e.lineno}") from None


def read_state(path: Path, expect: type[T]) -> T | None:
    """The file's content when it is a ``expect`` (dict or list); None when the file is missing;
    StateFileError when it exists but cannot be read or has another shape."""
    try:
        data = _load(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise StateFileError(path, str(e)) from None
    if not isinstance(data, expect):
        raise StateFileError(path, f"a JSON {type(data).__name__}, not an {expect.__name__}")
    return data


def read_cache(path: Path, expect: type[T]) -> T:
    """A cache's content, or an empty ``expect`` when it is missing or damaged (it is rebuilt)."""
    try:
        data = _load(path)
    except FileNotFoundError:
        return expect()
    except (OSError, ValueError) as e:
        log.warning("ignoring damaged cache %s: %s", path, e)
        return expect()
    if not isinstance(data, expect):
        log.warning("ignoring cache %s: a JSON %s, not an %s", path, type(data).__name__, expect.__name__)
        return expect()
    return data
