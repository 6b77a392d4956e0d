"""Fault suite, hostile input and state (issue 13): each finding of the LAN probe, tried again.

Every test reports a row to bench/results/faults.md (make faults): the fault, what must happen,
what happened here.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import faultkit
import httpx
import pytest
from conftest import engine_runtime, link_model, wait_for

from zoe_panel.auth import LoginLimiter, hash_password
from zoe_panel.engine.base import EngineState
from zoe_panel.errors import AuthError, ModelStoreError
from zoe_panel.models.library import add_file, safe_name
from zoe_panel.runtime import Runtime
from zoe_panel.settings import Settings

pytestmark = [pytest.mark.faults, pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]
SMOL = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cli(*args: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zoe_panel", *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- login -------------------------------------------------------------------------------------
def test_concurrent_wrong_passwords_cannot_race_the_lockout(monkeypatch: pytest.MonkeyPatch) -> None:
    import zoe_panel.auth as auth

    stored = hash_password("the right one")
    checks, active, peak = [0], [0], [0]
    lock = threading.Lock()
    real = auth.verify_password

    def counting(h: str, p: str) -> bool:
        with lock:
            checks[0] += 1
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            return real(h, p)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(auth, "verify_password", counting)
    limiter = LoginLimiter(max_attempts=3, lockout_s=60)
    outcomes: list[str] = []
    barrier = threading.Barrier(20)

    def guess() -> None:
        barrier.wait()
        try:
            ok, _ = limiter.sign_in("10.0.0.9", stored, "wrong guess")
            outcomes.append("ok" if ok else "wrong")
        except AuthError:
            outcomes.append("refused")

    threads = [threading.Thread(target=guess) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert checks[0] <= 3 and peak[0] <= 2
    assert outcomes.count("refused") >= 17
    with pytest.raises(AuthError, match="locked"):
        limiter.sign_in("10.0.0.9", stored, "the right one")  # the three failures locked it
    faultkit.report(
        "20 concurrent wrong passwords, 3 attempts allowed (main: all 20 checked, RSS 200 MB → 1.5 GB)",
        "at most 3 hash checks, at most 2 at a time",
        f"{checks[0]} checks, {peak[0]} at a time, {outcomes.count('refused')} refused",
        checks[0] <= 3 and peak[0] <= 2,
    )


# -- state files -------------------------------------------------------------------------------
@pytest.fixture
def rt(settings_with_model: Settings):  # type: ignore[no-untyped-def]
    with engine_runtime(settings_with_model) as runtime:
        yield runtime


def test_secrets_are_owner_only_and_state_folders_private(rt: Runtime) -> None:
    st = rt.engine.start(rt.default_spec(SMOL, ctx=512), backend="process")
    assert st.spec is not None and st.spec.api_key  # every engine gets a key
    meta = rt.settings.state_dir / "engine" / "engine.json"
    key_file = rt.settings.state_dir / "engine-api-key"
    modes = {
        "engine.json": mode(meta),
        "engine-api-key": mode(key_file),
        "desired.json": mode(rt.settings.state_dir / "engine" / "desired.json"),
        "state/": mode(rt.settings.state_dir),
        "state/engine/": mode(rt.settings.state_dir / "engine"),
        "home/": mode(rt.settings.home),
    }
    assert st.spec.api_key in meta.read_text()
    ok = all(v == 0o600 for k, v in modes.items() if not k.endswith("/")) and all(
        v == 0o700 for k, v in modes.items() if k.endswith("/")
    )
    faultkit.report(
        "the API key on disk (main: engine.json 0644)",
        "files with secrets 0600, state folders 0700",
        ", ".join(f"{k} {v:o}" for k, v in modes.items()),
        ok,
    )
    assert ok, modes


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("engine.json", "{}"),
        ("engine.json", '{"run_id": "x", "spec": {"model": "/m.gguf"}, "supervisor_pid": "abc"}'),
        ("supervisor.json", '{"run_id": "x", "child_pid": "abc", "restarts": "x"}'),
    ],
)
def test_engine_state_files_of_the_wrong_shape_never_give_a_traceback(
    settings_with_model: Settings, name: str, content: str
) -> None:
    d = settings_with_model.state_dir / "engine"
    d.mkdir(parents=True, exist_ok=True)
    (d / "engine.json").write_text('{"stopped_at": 1}')
    (d / name).write_text(content)
    done = cli("status", "--json")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    data = json.loads(done.stdout)
    if name == "engine.json" and content != "{}":
        assert "engine.json is damaged" in data["reason"] and "mv " in data["reason"]
    faultkit.report(f"{name} = {content[:50]}", "status answers, names the file", data["state"], True)


@pytest.mark.parametrize(
    ("name", "content"),
    [("gguf-cache.json", "[1, 2]"), ("binaries.json", '["a"]'), ("presets.json", "7"), ("verify.json", "{")],
)
def test_damaged_caches_are_rebuilt(settings_with_model: Settings, name: str, content: str) -> None:
    settings_with_model.state_dir.mkdir(parents=True, exist_ok=True)
    (settings_with_model.state_dir / name).write_text(content)
    done = cli("models", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["name"] == SMOL
    faultkit.report(f"{name} = {content}", "treated as empty and rebuilt", "models listed", True)


def test_settings_file_of_the_wrong_shape_is_a_message(settings_with_model: Settings) -> None:
    settings_with_model.settings_file.write_bytes(b"zoe = 5\n")
    done = cli("status")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "'zoe' must be a table" in done.stderr and "settings.toml.bad" in done.stderr
    faultkit.report("settings.toml: zoe = 5", "a message naming the file and the reset", done.stderr.strip()[:80], True)


def test_garbage_engine_json_while_the_engine_runs_still_stops_it(rt: Runtime) -> None:
    rt.engine.start(rt.default_spec(SMOL, ctx=512), backend="process")
    st = rt.engine.wait(120, on_poll=rt.recording())
    child = st.pid
    meta = rt.settings.state_dir / "engine" / "engine.json"
    meta.write_text("}{ not json")
    rt.engine.invalidate()
    damaged = rt.engine.status(max_age_s=0)
    assert damaged.state == EngineState.UNHEALTHY and "still runs" in damaged.reason
    done = cli("stop")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: not _alive(child), 15)
    assert (meta.with_name("engine.json.bad")).exists()
    assert rt.engine.status(max_age_s=0).state == EngineState.STOPPED
    faultkit.report(
        "engine.json garbage while the engine runs (main: STOPPED, and stop impossible)",
        "UNHEALTHY with the reason; the CLI stops it",
        f"{damaged.state.value}; stop exit {done.returncode}, engine gone",
        True,
    )


def _alive(pid: int | None) -> bool:
    import psutil

    try:
        return bool(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_corrupt_history_is_kept_aside_and_a_new_one_started(settings_with_model: Settings) -> None:
    db = settings_with_model.history_db
    db.parent.mkdir(parents=True, exist_ok=True)
    db.write_bytes(b"not a database at all" * 500)
    with engine_runtime(settings_with_model, engine=False) as rt:
        kept = rt.history.recovered_from
        assert kept is not None and kept.exists() and kept.read_bytes().startswith(b"not a database")
        assert "kept as" in rt.history.notice
        rt.history.audit("x", "ok")
        assert rt.history.audit_log()[0]["action"] == "x"
    faultkit.report("history.sqlite corrupt", "kept aside, a new one, said so", kept.name, True)


# -- processes ----------------------------------------------------------------------------------
def test_stop_never_signals_a_process_that_reused_the_engines_pid(rt: Runtime) -> None:
    rt.engine.start(rt.default_spec(SMOL, ctx=512), backend="process")
    st = rt.engine.wait(120, on_poll=rt.recording())
    d = rt.settings.state_dir / "engine"
    meta = json.loads((d / "engine.json").read_text())
    sup = json.loads((d / "supervisor.json").read_text())
    os.killpg(os.getpgid(meta["supervisor_pid"]), signal.SIGKILL)  # the engine dies ...
    wait_for(lambda: not _alive(st.pid), 15)
    stranger = subprocess.Popen(["sleep", "300"], start_new_session=True)  # ... and its pids are reused
    try:
        meta["supervisor_pid"] = stranger.pid
        sup.update(supervisor_pid=stranger.pid, child_pid=stranger.pid)
        (d / "engine.json").write_text(json.dumps(meta))
        (d / "supervisor.json").write_text(json.dumps(sup))
        rt.engine.invalidate()
        try:
            rt.engine.stop(timeout_s=2)
        except Exception:
            pass
        time.sleep(0.5)
        survived = stranger.poll() is None
    finally:
        stranger.kill()
    faultkit.report(
        "stop after the engine died and its pid was reused (main: SIGKILLed the stranger's group)",
        "the stranger is not signalled",
        "stranger alive" if survived else "stranger KILLED",
        survived,
    )
    assert survived


def test_sigkill_with_ample_memory_is_not_blamed_on_the_oom_killer(rt: Runtime) -> None:
    rt.engine.start(rt.default_spec(SMOL, ctx=512), backend="process")
    st = rt.engine.wait(120, on_poll=rt.recording())
    os.kill(st.pid or 0, signal.SIGKILL)
    failed = wait_for(lambda: (s := rt.engine.status(max_age_s=0)).state == EngineState.FAILED and s, 20)
    d = rt.engine.diagnose(failed)
    assert d is not None and d.kind == "killed" and "not for lack of memory" in d.title
    faultkit.report(
        "kill -9 of the engine with memory ample (main: blamed the OOM killer)",
        "SIGKILL named, memory cleared as the cause",
        d.title[:90],
        True,
    )


# -- the engine on the network -------------------------------------------------------------------
def test_the_default_engine_refuses_cross_origin_pages(rt: Runtime) -> None:
    rt.engine.start(rt.default_spec(SMOL, ctx=512), backend="process")
    st = rt.engine.wait(120, on_poll=rt.recording())
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    evil = {"Origin": "http://evil.example"}
    r = httpx.post(f"{st.base_url}/v1/chat/completions", json=body, headers=evil, timeout=30)
    ok = httpx.post(
        f"{st.base_url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {st.spec.api_key}"},  # type: ignore[union-attr]
        timeout=30,
    )
    assert r.status_code == 401 and ok.status_code == 200
    faultkit.report(
        "a web page's cross-origin request to the default engine (main: answered)",
        "401: every engine has a key the panel holds",
        f"without key {r.status_code}, with key {ok.status_code}",
        True,
    )


def test_start_on_all_interfaces_without_a_key_warns_and_names_the_lan_url(
    settings_with_model: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZOE_ENGINE_API_KEY", "off")
    done = cli("start", "--model", SMOL, "--ctx", "512", "--host", "0.0.0.0", "--wait", "120", "--json")
    try:
        assert done.returncode == 0, done.stderr
        data = json.loads(done.stdout)
        assert "WARNING" in done.stderr and "without an API key" in done.stderr
        assert data["lan_urls"] and data["warnings"]
    finally:
        cli("stop")
    faultkit.report(
        "start --host 0.0.0.0 without a key (main: a 127.0.0.1 URL, no warning)",
        "a warning and the LAN URLs",
        f"{len(data['warnings'])} warning, {data['lan_urls'][0]}",
        True,
    )


# -- names and files -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("a\nb.gguf", "control characters or line breaks"),
        ("bell\x07.gguf", "control characters"),
        ("x" * 5000 + ".gguf", "5,005 characters"),
    ],
)
def test_model_names_with_control_characters_or_absurd_length_are_refused(name: str, says: str) -> None:
    with pytest.raises(ModelStoreError) as e:
        safe_name(name)
    assert says in str(e.value) and len(str(e.value)) < 300
    faultkit.report(f"model name {name[:12]!r}… ({len(name)} chars)", "a clear refusal", str(e.value)[:70], True)


def test_markdown_in_a_model_name_is_shown_as_text(settings_with_model: Settings) -> None:
    """The sidebar badge names the running engine's model: with an image and a colour directive in
    the name, the page shows those characters, never an image."""
    from streamlit.testing.v1 import AppTest

    from zoe_panel.ui.widgets import md

    evil = "![x](http:evil.example) :red[big].gguf"
    link_model(settings_with_model.models_path / SMOL, settings_with_model.models_path, evil)
    done = cli("start", "--model", evil, "--ctx", "512", "--wait", "120")
    try:
        assert done.returncode == 0, done.stderr
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
        at.run()
        shown = " ".join(str(m.value) for m in at.sidebar.markdown)
    finally:
        cli("stop")
    assert md(evil) in shown and "![x](http" not in shown and ":red[big]" not in shown
    faultkit.report(
        "a model named ![x](http:…) (main: an <img> in the sidebar)", "escaped everywhere", md(evil)[:40], True
    )


def test_add_move_of_a_symlink_moves_the_file_not_the_link(
    settings_with_model: Settings, tmp_path: Path, smollm2: Path
) -> None:
    real = tmp_path / "real" / "m.gguf"
    real.parent.mkdir()
    real.write_bytes(smollm2.read_bytes())
    link = tmp_path / "link.gguf"
    link.symlink_to(real)
    with engine_runtime(settings_with_model, engine=False) as rt:
        path = add_file(rt.store, link, move=True, name="moved.gguf")
        assert path.is_file() and not path.is_symlink() and path.stat().st_size == smollm2.stat().st_size
        assert not link.exists() and not link.is_symlink()
    faultkit.report(
        "add --move of a symlink (main: moved the link)", "the file is moved in", "regular file added", True
    )


def test_a_refused_download_leaves_no_staging_folder(settings_with_model: Settings, tmp_path: Path) -> None:
    from hub_server import FakeHub

    from zoe_panel.errors import DownloadError
    from zoe_panel.models import download as dl

    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"PK\x03\x04 not a model at all" * 1000)
    hub = FakeHub()
    hub.add("org/bad-GGUF", "model.gguf", fake)
    server, url = hub.serve()
    try:
        with engine_runtime(settings_with_model, engine=False) as rt:
            (model,) = dl.list_gguf("org/bad-GGUF", endpoint=url)
            with pytest.raises((DownloadError, ModelStoreError)):
                dl.download(rt.store, "org/bad-GGUF", model, endpoint=url, margin_bytes=0)
            left = [p.name for p in rt.store.root.rglob("*") if p.is_dir()]
    finally:
        server.shutdown()
    assert left == [], left
    faultkit.report(
        "a download refused as not GGUF (main: empty staging folders left)", "nothing left", str(left), True
    )
