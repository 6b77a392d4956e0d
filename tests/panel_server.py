"""Serve the panel as `make run` does (python -m zoe_panel.web) for browser tests, and open
Debian's Chromium with Playwright."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


@contextmanager
def panel(port: int, env: dict[str, str], *, address: str = "127.0.0.1") -> Iterator[str]:
    """Serve the panel; yield its URL once /_stcore/health answers."""
    log_path = Path(env["ZOE_HOME"]) / "streamlit.log"
    with log_path.open("wb") as log, _streamlit(port, env, address, log) as proc:
        yield _wait_up(proc, port, log_path)


@contextmanager
def _streamlit(port: int, env: dict[str, str], address: str, log: IO[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    # The panel's launcher (make run): serve.py's App, uvicorn's own proxy-header trust turned off.
    cmd = [sys.executable, "-m", "zoe_panel.web", "--server.port", str(port)]
    cmd += ["--server.address", address, "--server.headless", "true"]
    proc = subprocess.Popen(
        # each test panel gets its own exporter port (or none): two panels must not race for 9464
        cmd,
        cwd=ROOT,
        env={**os.environ, "ZOE_EXPORTER_PORT": "0", **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _wait_up(proc: subprocess.Popen[bytes], port: int, log_path: Path) -> str:
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            # up, and warmed up (runtime, imports, library): tests measure the panel at rest
            if httpx.get(url + "/zoe/ready", timeout=1).status_code == 200:
                return url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("streamlit did not come up: " + log_path.read_text()[-2000:])
        time.sleep(0.2)


def pick_option(page, key: str, name: str, *, attempts: int = 10) -> None:  # type: ignore[no-untyped-def]
    """Open a selectbox and choose an option. A rerun of the page can close the list between the
    click and the choice, so open it again until the option can be clicked."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(attempts):
        page.locator(f".st-key-{key}").click()
        try:
            page.get_by_role("option", name=name).click(timeout=3000)
            return
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    raise AssertionError(f"could not pick {name!r} in {key}")
