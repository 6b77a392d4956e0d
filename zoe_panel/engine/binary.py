"""Find the engine programs and learn what each llama-server build understands (cached)."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

from zoe_panel.build.records import BuildRecords
from zoe_panel.build.variants import machine_fingerprint
from zoe_panel.engine.argv import Capabilities
from zoe_panel.errors import BinaryNotFound
from zoe_panel.jsonfile import read_cache, write_json_atomic
from zoe_panel.settings import Settings

HOW_TO_GET = (
    "run `make llama-server` (builds it once from the llama.cpp source in the llama-cpp-python "
    "sdist, checks it decodes, caches it under ~/.cache/zoe-panel), put llama-server on PATH, or "
    "set ZOE_LLAMA_SERVER to its path"
)


def find_llama_server(settings: Settings) -> str:
    """The llama-server to run: ZOE_LLAMA_SERVER, then PATH, then the build chosen on this machine.

    A cached build is used only once it has decoded tokens here (``make llama-server`` smoke-runs
    it): a binary that traps at its first decode passes ``--version`` all the same."""
    if settings.llama_server:
        path = Path(settings.llama_server).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
        raise BinaryNotFound(f"ZOE_LLAMA_SERVER={settings.llama_server} is not an executable file; {HOW_TO_GET}")
    on_path = shutil.which("llama-server")
    if on_path:
        return on_path
    records = BuildRecords(settings.cache_dir)
    chosen = records.chosen(fingerprint(), "llama-server")
    if chosen is not None:
        return chosen.path
    if any(r.kind == "llama-server" for r in records.all()):
        raise BinaryNotFound(
            "a llama-server build is cached but has not been checked on this machine yet: run "
            "`make llama-server` (it smoke-runs the build, in seconds, and rebuilds a safer variant "
            "if it crashes)"
        )
    raise BinaryNotFound(f"llama-server was not found; {HOW_TO_GET}")


@functools.lru_cache(maxsize=1)
def fingerprint() -> str:
    return machine_fingerprint()


def build_of(settings: Settings, binary: str) -> str:
    """The variant of a binary the panel built ('native-noamx (cpu, smoke 83.1 tok/s)'), or ''."""
    from zoe_panel.build.server import describe

    rec = BuildRecords(settings.cache_dir).for_path(binary)
    return describe(rec, fingerprint()) if rec is not None else ""


def python_build(settings: Settings) -> str:
    """The variant of the llama-cpp-python wheel the panel built and checked here, or ''."""
    from zoe_panel.build.server import describe

    rec = BuildRecords(settings.cache_dir).chosen(fingerprint(), "llama-cpp-python")
    return describe(rec, fingerprint()) if rec is not None else ""


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
    cache: dict[str, dict[str, object]] = read_cache(cache_file, dict)
    if isinstance(cache.get(key), dict) and "spec_types" in cache[key]:  # older entries lack fields
        return Capabilities.from_dict(cache[key])
    help_text = _run([binary, "--help"])
    version_text = _run([binary, "--version"])
    caps = Capabilities.from_help(help_text, version_text)
    cache[key] = caps.to_dict()
    try:
        write_json_atomic(cache_file, cache, indent=1)
    except OSError:
        pass  # a read-only state folder costs one --help per start, nothing more
    return caps


def _run(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BinaryNotFound(f"{argv[0]} does not run ({e}); {HOW_TO_GET}") from None
    return (done.stdout or "") + (done.stderr or "")
