"""Find the engine programs and learn what each llama-server build understands (cached)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from zoe_panel.engine.argv import Capabilities
from zoe_panel.errors import BinaryNotFound
from zoe_panel.settings import Settings

HOW_TO_GET = (
    "run `make llama-server` (builds it once from the llama.cpp source in the llama-cpp-python "
    "sdist, cached under ~/.cache/zoe-panel), put llama-server on PATH, or set ZOE_LLAMA_SERVER "
    "to its path"
)


def find_llama_server(settings: Settings) -> str:
    """The llama-server to run: ZOE_LLAMA_SERVER, then PATH, then the cached build."""
    if settings.llama_server:
        path = Path(settings.llama_server).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
        raise BinaryNotFound(f"ZOE_LLAMA_SERVER={settings.llama_server} is not an executable file; {HOW_TO_GET}")
    on_path = shutil.which("llama-server")
    if on_path:
        return on_path
    cached = sorted(
        (p for p in (settings.cache_dir / "bin").glob("llama-server-*") if os.access(p, os.X_OK)),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    # Prefer a GPU build where one was made, since it is what the machine was set up for.
    for p in cached:
        if "cuda" in p.name:
            return str(p)
    if cached:
        return str(cached[0])
    raise BinaryNotFound(f"llama-server was not found; {HOW_TO_GET}")


def python_server_available() -> tuple[bool, str]:
    """Whether ``python -m llama_cpp.server`` can run in this interpreter's environment."""
    import importlib.util

    for mod in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette"):
        if importlib.util.find_spec(mod) is None:
            return False, (
                f"the llama-cpp-python flavour needs the {mod} module: pip install 'llama-cpp-python[server]'"
            )
    return True, sys.executable


def capabilities(binary: str, cache_file: Path) -> Capabilities:
    """Read ``--help``/``--version`` once per binary (path, size, mtime) and cache the result."""
    st = Path(binary).stat()
    key = f"{Path(binary).resolve()}:{st.st_size}:{st.st_mtime_ns}"
    cache: dict[str, dict[str, object]] = {}
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if "flags" in cache.get(key, {}):  # entries without flags predate the check
        return Capabilities.from_dict(cache[key])
    help_text = _run([binary, "--help"])
    version_text = _run([binary, "--version"])
    caps = Capabilities.from_help(help_text, version_text)
    cache[key] = caps.to_dict()
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(cache, indent=1))
        os.replace(tmp, cache_file)
    except OSError:
        pass  # a read-only state folder costs one --help per start, nothing more
    return caps


def _run(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BinaryNotFound(f"{argv[0]} does not run ({e}); {HOW_TO_GET}") from None
    return (done.stdout or "") + (done.stderr or "")
