"""Shared fixtures: an isolated ZOE_HOME per test, the real demo models, free ports.

Set ZOE_REQUIRE_ALL=1 (scripts/test.sh does) to turn "missing real part" skips into failures,
so CI can never pass by skipping the real-engine, docker or browser tests.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from zoe_panel.models import demo
from zoe_panel.settings import Settings, load_settings

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


@pytest.fixture
def runtime(settings_with_model: Settings) -> Iterator:  # type: ignore[type-arg]
    """A Runtime without a sampler thread; any engine it started is stopped afterwards."""
    from zoe_panel.runtime import Runtime

    rt = Runtime(settings_with_model, sampler=False)
    yield rt
    try:
        rt.controller.stop(timeout_s=5)
    except Exception:
        pass
    rt.close()


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
