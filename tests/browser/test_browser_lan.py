"""The panel on the LAN, against a real server (issue 13): uploads from sessions that have not
signed in, model uploads that must not sit in memory, and X-Forwarded-For."""

from __future__ import annotations

from pathlib import Path

import faultkit
import httpx
import psutil
import pytest
from conftest import free_port
from panel_server import panel
from st_client import session

from zoe_panel.auth import hash_password

pytestmark = [pytest.mark.browser, pytest.mark.faults]
PASSWORD = "correct horse battery"


def server_rss(port: int) -> tuple[psutil.Process, int]:
    for conn in psutil.net_connections(kind="tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
            p = psutil.Process(conn.pid)
            return p, p.memory_info().rss
    raise AssertionError(f"nothing listens on {port}")


def test_sessions_that_did_not_sign_in_cannot_upload(zoe_home: Path) -> None:
    """An attacker's own session on the sign-in page, its own XSRF cookie and token, three 200 MB
    bodies: main answered 204 each time and grew from 94 MB to 1.33 GB."""
    port = free_port()
    env = {"ZOE_HOME": str(zoe_home), "ZOE_PASSWORD_HASH": hash_password(PASSWORD)}
    with panel(port, env, address="127.0.0.1") as url:
        proc, before = server_rss(port)
        codes = []
        with session(url) as (sid, token, _ws):
            for i in range(3):
                r = httpx.put(
                    f"{url}/_stcore/upload_file/{sid}/f{i}",
                    headers={"X-Xsrftoken": token},
                    cookies={"_streamlit_xsrf": token},
                    files={"file": ("x.gguf", b"\0" * (200 << 20))},
                    timeout=120,
                )
                codes.append(r.status_code)
        grew = (proc.memory_info().rss - before) / 2**20
    faultkit.report(
        "3 × 200 MB uploads from a session that never signed in (main: 204 each, RSS 94 MB → 1.33 GB)",
        "refused before the body is read; RSS grows < 50 MB",
        f"HTTP {codes}, RSS +{grew:.0f} MB",
        codes == [403] * 3 and grew < 50,
    )
    assert codes == [403, 403, 403] and grew < 50


def test_a_model_upload_streams_to_disk(browser, zoe_home: Path, smollm2: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """98 MB through the Upload tab: the panel's memory does not grow by the file's size."""
    src = tmp_path / "copy.gguf"
    src.write_bytes(smollm2.read_bytes())
    port = free_port()
    with panel(port, {"ZOE_HOME": str(zoe_home)}) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        page.set_default_timeout(120_000)
        page.goto(url + "/models")
        page.get_by_role("tab", name="Upload").click()
        frame = page.frame_locator("iframe[data-testid=stIFrame], iframe[title='st.iframe']").first
        frame.locator("#zoe-upload-file").set_input_files(str(src))
        proc, before = server_rss(port)
        peak = [before]
        frame.locator("#zoe-upload-go").click()
        done = frame.get_by_text("Added copy.gguf")
        while not done.is_visible():
            peak[0] = max(peak[0], proc.memory_info().rss)
            page.wait_for_timeout(100)
        grew = (peak[0] - before) / 2**20
    size = (zoe_home / "models" / "copy.gguf").stat().st_size
    faultkit.report(
        "a 98 MB model upload (main: held whole in RAM by Streamlit's uploader)",
        "streamed to disk: the panel grows far less than the file",
        f"{size / 2**20:.0f} MB added, panel RSS +{grew:.0f} MB at the peak",
        size == smollm2.stat().st_size and grew < 50,
    )
    assert size == smollm2.stat().st_size and grew < 50


def _sign_in(browser, url: str, forwarded_for: str, password: str) -> str:  # type: ignore[no-untyped-def]
    ctx = browser.new_context(extra_http_headers={"X-Forwarded-For": forwarded_for})
    page = ctx.new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    page.get_by_role("heading", name="Sign in to Zoe Panel").wait_for()
    page.locator(".st-key-login-password input").fill(password)
    page.get_by_role("button", name="Sign in").click()
    alert = page.locator('[data-testid="stAlert"]').first
    alert.wait_for()
    text = alert.inner_text()
    ctx.close()
    return text


@pytest.mark.parametrize("trusted", ["", "127.0.0.1"])
def test_x_forwarded_for_is_believed_only_from_a_named_proxy(browser, zoe_home: Path, trusted: str) -> None:  # type: ignore[no-untyped-def]
    env = {
        "ZOE_HOME": str(zoe_home),
        "ZOE_PASSWORD_HASH": hash_password(PASSWORD),
        "ZOE_LOGIN_MAX_ATTEMPTS": "2",
        "ZOE_TRUSTED_PROXIES": trusted,
    }
    with panel(free_port(), env) as url:
        _sign_in(browser, url, "203.0.113.1", "wrong one")
        locked = _sign_in(browser, url, "203.0.113.1", "wrong two")
        other = _sign_in(browser, url, "198.51.100.7", "wrong three")
    from zoe_panel.history import History

    clients = {r["client"] for r in History(zoe_home / "history.sqlite").audit_log() if r["action"] == "login"}
    if not trusted:
        # the header is ignored: all three are the same loopback client, so the spoofed address
        # neither gets fresh attempts nor shows up anywhere
        ok = "Locked out" in locked and "locked" in other and clients == {"local"}
    else:
        ok = "Locked out" in locked and "Wrong password" in other and clients == {"203.0.113.1", "198.51.100.7"}
    faultkit.report(
        f"X-Forwarded-For from loopback, trusted_proxies={trusted or 'unset'} (main: always believed)",
        "believed only from a named proxy",
        f"second address: {other.splitlines()[0][:50]}; audit clients {sorted(clients)}",
        ok,
    )
    assert ok, (locked, other, clients)
