"""Shared fixtures: an isolated ZOE_HOME per test, the real demo models, free ports.

Set ZOE_REQUIRE_ALL=1 (scripts/test.sh does) to turn "missing real part" skips into failures,
so CI can never pass by skipping the real-engine, docker or browser tests.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from zoe_panel.models import demo
from zoe_panel.settings import Settings, load_settings

if TYPE_CHECKING:
    from zoe_panel.runtime import Runtime

CACHE = Path(os.environ.get("ZOE_CACHE") or Path.home() / ".cache" / "zoe-panel")


def require(ok: bool, reason: str) -> None:
    """Skip locally when a real part is missing; fail under ZOE_REQUIRE_ALL=1 (CI)."""
    if ok:
        return
    if os.environ.get("ZOE_REQUIRE_ALL") == "1":
        pytest.fail(f"required for this run: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def link_model(src: Path, models_dir: Path, name: str | None = None) -> Path:
    models_dir.mkdir(parents=True, exist_ok=True)
    dst = models_dir / (name or src.name)
    try:
        os.link(src, dst)
    except OSError:
        import shutil

        shutil.copyfile(src, dst)
    return dst


@pytest.fixture(scope="session")
def smollm2() -> Path:
    path = CACHE / "models" / demo.SMOLLM2.filename
    require(path.is_file(), f"{path} missing: run scripts/test.sh (it fetches the test models)")
    return path


@pytest.fixture(scope="session")
def gemma3() -> Path:
    path = CACHE / "models" / demo.GEMMA3_270M.filename
    require(path.is_file(), f"{path} missing: run scripts/test.sh (it fetches the test models)")
    return path


@pytest.fixture
def zoe_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "zoe"
    monkeypatch.setenv("ZOE_HOME", str(home))
    monkeypatch.setenv("ZOE_ENGINE_PORT", str(free_port()))
    monkeypatch.setenv("ZOE_CACHE", str(CACHE))
    for var in ("ZOE_MODELS_DIR", "ZOE_FLAVOR", "ZOE_TELEMETRY", "ZOE_PASSWORD_HASH", "ZOE_BACKEND"):
        monkeypatch.delenv(var, raising=False)
    (home / "models").mkdir(parents=True)
    return home


@pytest.fixture
def settings(zoe_home: Path) -> Settings:
    return load_settings()


@pytest.fixture
def settings_with_model(zoe_home: Path, smollm2: Path) -> Settings:
    link_model(smollm2, zoe_home / "models")
    return load_settings()


def wait_for(predicate, timeout_s: float = 30.0, interval_s: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll until predicate() is truthy; return its value or raise AssertionError."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(interval_s)


def require_llama_server(settings: Settings) -> None:
    """Fail (under make test) or skip when no llama-server can be found for these settings."""
    from zoe_panel.engine.binary import find_llama_server
    from zoe_panel.errors import BinaryNotFound

    try:
        find_llama_server(settings)
    except BinaryNotFound as e:
        require(False, str(e))


@contextmanager
def engine_runtime(settings: Settings, *, sampler: bool = False, engine: bool = True) -> Iterator[Runtime]:
    """A Runtime (needing the engine binary when ``engine``); any engine it started is stopped
    and the runtime closed afterwards."""
    from zoe_panel.runtime import Runtime

    if engine:
        require_llama_server(settings)
    rt = Runtime(settings, sampler=sampler)
    rt.start_background()  # the sampler (when asked for) and restore, as the panel process does
    try:
        yield rt
    finally:
        try:
            rt.engine.stop(timeout_s=5)
        except Exception:
            pass
        rt.close()


@pytest.fixture
def runtime(settings_with_model: Settings) -> Iterator[Runtime]:
    """A Runtime without a sampler thread."""
    with engine_runtime(settings_with_model, engine=False) as rt:
        yield rt


@pytest.fixture
def browser():  # type: ignore[no-untyped-def]
    """Debian's Chromium under Playwright."""
    from panel_server import CHROMIUM, CHROMIUM_ARGS

    require(os.path.exists(CHROMIUM), "Debian's chromium is not installed (scripts/test_env.sh installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "playwright is not installed")

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 130 MB tmpfs, mounted and removed by the test (root only)."""
    require(os.geteuid() == 0, "mounting a size-limited tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=130m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    """Print the fault table (and write it to $ZOE_FAULT_REPORT) when fault tests ran."""
    import faultkit

    if not faultkit.ROWS:
        return
    text = faultkit.table()
    terminalreporter.write_sep("=", "fault suite")
    terminalreporter.write_line(text)
    out = os.environ.get("ZOE_FAULT_REPORT")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text("# Fault suite\n\n" + text + "\n")


@pytest.fixture
def vllm_home(settings_with_model: Settings, zoe_home: Path) -> Path:
    """A home with SmolLM2, where the test set-up's vLLM (under the shared cache) is ready."""
    from zoe_panel.engine.vllm_support import status

    sup = status(CACHE)
    require(sup.ready, f"vLLM: {sup.detail}")
    return zoe_home


def zoe_cli(home: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """``python -m zoe_panel ARGS`` with ZOE_HOME=home, from the repository root."""
    env = {**os.environ, "ZOE_HOME": str(home)}
    root = Path(__file__).resolve().parents[1]
    return subprocess.run(
        [sys.executable, "-m", "zoe_panel", *args], env=env, cwd=root, capture_output=True, text=True, timeout=timeout
    )
