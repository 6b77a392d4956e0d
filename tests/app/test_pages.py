"""Every page through Streamlit's AppTest, starting from app.py, wired to the fake engine (a tiny
real HTTP server registered as a flavour: tests/fake_engine.py). What the pages show of an engine
is tested on the real llama-server in tests/integration and tests/browser."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_for
from fake_flavor import register_fake
from streamlit.testing.v1 import AppTest

from zoe_panel.engine.base import EngineState
from zoe_panel.runtime import Runtime, set_runtime

MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf"
PAGES = [
    "pages/engine.py",
    "pages/models.py",
    "pages/monitor.py",
    "pages/chat.py",
    "pages/history.py",
    "pages/settings.py",
    "pages/endpoint.py",
    "pages/suites.py",
]


def plain(markdown: str) -> str:
    """Page text as shown: the backslash escapes md() puts before Markdown characters removed."""
    return re.sub(r"\\(.)", r"\1", markdown)


@pytest.fixture
def rt(settings_with_model, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:  # type: ignore[no-untyped-def]
    for key, value in register_fake().items():
        monkeypatch.setenv(key, value)
    runtime = Runtime(settings_with_model.replace(flavor="fake"), sampler=True)
    runtime.start_background()
    set_runtime(runtime)
    yield runtime
    try:
        runtime.engine.stop(timeout_s=5)
    except Exception:
        pass
    set_runtime(None)


def app() -> AppTest:
    at = AppTest.from_file("../../app.py", default_timeout=60)
    at.run()
    assert not at.exception
    return at


def frame_with(at: AppTest, column: str):  # type: ignore[no-untyped-def]
    """The dataframe or static table that has this column (AppTest does not index them by key)."""
    return next(d.value for d in [*at.dataframe, *at.table] if column in d.value.columns)


def texts(at: AppTest) -> str:
    return plain("\n".join(str(m.value) for m in [*at.markdown, *at.caption, *at.error, *at.info, *at.warning]))


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_exception(rt: Runtime, page: str) -> None:
    at = app()
    at.switch_page(page).run()
    assert not at.exception, at.exception


def test_models_page_shows_real_metadata_and_flags_bad_files(rt: Runtime) -> None:
    (rt.store.root / "broken.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 64)
    at = app()
    at.switch_page("pages/models.py").run()
    df = at.dataframe[0].value
    row = df[df["file"] == MODEL].iloc[0]
    assert row["architecture"] == "llama" and row["quant"] == "Q4_1" and row["layers"] == 30
    assert row["KV heads"] == "3" and row["head size"] == 64 and row["trained ctx"] == 8192
    errors = [plain(e.value) for e in at.error]
    assert any("broken.gguf" in e and ("corrupt" in e or "does not parse" in e) for e in errors), errors


def test_monitor_page_draws_the_chart_from_the_sampler(rt: Runtime) -> None:
    wait_for(lambda: len(rt.ring) >= 2, 10)
    at = app()
    at.switch_page("pages/monitor.py").run()
    charts = at.get("plotly_chart")
    assert charts, "no plotly chart on the Monitor page"
    assert "source: host" in texts(at)


def test_engine_start_stop_and_chat(rt: Runtime) -> None:
    at = app()
    assert at.selectbox(key="engine-model").value == MODEL
    at.number_input(key="engine-ctx").set_value(2048)
    at.button(key="engine-start").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    wait_for(lambda: rt.engine.status(max_age_s=0).state == EngineState.READY, 60)
    at.run()
    assert "READY" in texts(at)
    spec = rt.engine.status().spec
    assert spec is not None and spec.ctx == 2048 and spec.model.endswith(MODEL)

    at.switch_page("pages/chat.py").run()
    assert not at.chat_input(key="chat-input").disabled
    at.chat_input(key="chat-input").set_value("Say hello.").run()
    assert not at.exception
    messages = [m for m in at.chat_message if m.name == "assistant"]
    assert messages and messages[-1].markdown and messages[-1].markdown[0].value.strip()
    assert "TTFT" in texts(at) and "tok/s" in texts(at)

    at.switch_page("pages/engine.py").run()
    at.button(key="engine-stop").click().run()
    assert rt.engine.status(max_age_s=0).state == EngineState.STOPPED
    at.button(key="engine-stop").click().run()
    assert any("nothing to stop" in plain(e.value) for e in at.error)


def test_chat_is_disabled_with_the_reason_when_no_engine(rt: Runtime) -> None:
    at = app()
    at.switch_page("pages/chat.py").run()
    assert at.chat_input(key="chat-input").disabled
    assert "Engine is STOPPED" in texts(at)


def test_engine_page_predicts_memory_and_guards_a_config_that_will_not_fit(rt: Runtime) -> None:
    at = app()
    assert any("Predicted memory" in m.value and "fits" in m.value for m in at.markdown)
    table = frame_with(at, "part")
    parts = list(table["part"])
    assert {"KV cache", "= at READY", "prompt cache (cap)", "= total"} <= set(parts)
    assert "Largest context that fits" in texts(at)
    # the flags that bound memory after READY are shown with their values
    assert "--cache-ram" in texts(at) and "--ctx-checkpoints 8" in texts(at)
    at.number_input(key="engine-ctx").set_value(1_048_576)
    at.selectbox(key="engine-cache-type").set_value("f32").run()
    assert any("will not fit" in m.value for m in at.markdown)
    assert at.button(key="engine-start").disabled
    at.checkbox(key="engine-start-anyway").check().run()
    assert not at.button(key="engine-start").disabled


def test_settings_page_saves_and_refuses(rt: Runtime) -> None:
    at = app()
    at.switch_page("pages/settings.py").run()
    at.number_input(key="settings-sample_hz_loading").set_value(12.0)
    at.button[0].click().run()  # the form's Save
    assert not at.exception
    assert any("Saved to" in m.value for m in at.success)
    text = (rt.settings.home / "settings.toml").read_text()
    assert "sample_hz_loading = 12.0" in text
    at.switch_page("pages/settings.py").run()
    at.number_input(key="settings-sample_hz").set_value(500.0)
    at.button[0].click().run()
    assert any("sample_hz must be" in plain(e.value) for e in at.error)
    assert "sample_hz = 500" not in (rt.settings.home / "settings.toml").read_text()


def test_history_page_shows_a_recorded_run(rt: Runtime) -> None:
    rt.engine.start(rt.default_spec(MODEL, ctx=1024))
    rt.engine.wait(60, on_poll=rt.recording())
    wait_for(lambda: (r := rt.history.runs()) and r[0].peak_engine_rss_bytes, 20)
    rt.engine.stop()
    at = app()
    at.switch_page("pages/history.py").run()
    assert not at.exception
    df = frame_with(at, "KV predicted (MiB)")
    assert df.iloc[0]["model"] == MODEL and df.iloc[0]["KV predicted (MiB)"] == df.iloc[0]["KV llama.cpp (MiB)"] == 22.5
    assert df.iloc[0]["at READY predicted (MiB)"] > 0 and df.iloc[0]["after-READY caps (MiB)"] > 0
    # the run's load view and its whole-life memory chart
    assert len(at.get("plotly_chart")) == 2 and "field" in frame_with(at, "field").columns


def test_models_page_download_verify_delete(rt: Runtime, smollm2, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from hub_server import FakeHub

    hub = FakeHub()
    hub.add("org/smol-GGUF", "Smol-copy.Q4_1.gguf", smollm2)
    server, url = hub.serve()
    monkeypatch.setenv("HF_ENDPOINT", url)
    try:
        at = app()
        at.switch_page("pages/models.py").run()
        at.text_input(key="models-hf-repo").set_value("org/smol-GGUF")
        at.button(key="models-hf-list").click().run()
        at.button(key="models-hf-download").click().run()
        assert not at.exception
        (job,) = rt.jobs.jobs()
        rt.jobs.wait(job, 60)
        assert job.state == "done", job.error
        at.run()
        assert "Smol-copy.Q4_1.gguf" in list(frame_with(at, "file")["file"])
        at.selectbox(key="models-manage").set_value("Smol-copy.Q4_1.gguf")
        at.button(key="models-verify").click().run()
        assert any("OK: sha256 b179c9523d0e" in s.value for s in at.success)
        at.button(key="models-delete").click().run()
        at.button(key="models-delete-confirm").click().run()
        assert any("Deleted Smol-copy.Q4_1.gguf" in plain(s.value) for s in at.success)
        assert not (rt.store.root / "Smol-copy.Q4_1.gguf").exists()
        assert [r["action"] for r in rt.history.audit_log()][:2] == ["delete", "download"]
    finally:
        server.shutdown()


def test_engine_page_starts_from_the_models_preset(rt: Runtime) -> None:
    from zoe_panel.models.presets import Preset

    rt.presets.save(MODEL, Preset(ctx=3072, cache_type_k="q8_0", cache_type_v="q8_0", parallel=2))
    at = app()
    assert at.number_input(key="engine-ctx").value == 3072
    assert at.selectbox(key="engine-cache-type").value == "q8_0" and at.number_input(key="engine-parallel").value == 2
    assert "saved preset" in texts(at)


def test_a_reload_keeps_the_chosen_model_and_flavour(rt: Runtime) -> None:
    """A reload is a new Streamlit session: the Engine form's model and flavour come back from the URL."""
    from hf_folder import make_folder

    make_folder(rt.store.root / "Tiny.hf")  # a second model to choose: a Hugging Face folder (vLLM's)
    at = app()
    assert at.selectbox(key="engine-model").value == MODEL and at.query_params["model"] == MODEL
    at.selectbox(key="engine-model").set_value("Tiny.hf").run()
    assert at.selectbox(key="engine-flavor").value == "vllm"  # only vLLM serves a folder
    assert at.query_params["model"] == "Tiny.hf" and at.query_params["flavor"] == "vllm"
    again = AppTest.from_file("../../app.py", default_timeout=60)  # the reload: a new session, same URL
    again.query_params.update(model="Tiny.hf", flavor="vllm")
    again.run()
    assert not again.exception
    assert (
        again.selectbox(key="engine-model").value == "Tiny.hf" and again.selectbox(key="engine-flavor").value == "vllm"
    )
    fresh = AppTest.from_file("../../app.py", default_timeout=60)
    fresh.query_params.update(model="../../etc/passwd", flavor="nonsense")  # not in the lists: the defaults
    fresh.run()
    assert fresh.selectbox(key="engine-model").value == MODEL and fresh.selectbox(key="engine-flavor").value == "fake"


def test_sign_in_gate_covers_every_page(rt: Runtime, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from zoe_panel.auth import hash_password

    gated = Runtime(rt.settings.replace(password_hash=hash_password("open sesame 123")), sampler=False)
    set_runtime(gated)
    at = app()
    assert any("Sign in to Zoe Panel" in t.value for t in at.title)
    for page in PAGES:  # no page exists for a session that has not signed in
        with pytest.raises(ValueError, match=r"Known pages: \['Sign in'\]"):
            at.switch_page(page)
    assert [b.key for b in at.button if b.key and b.key.startswith(("engine-", "models-", "chat-"))] == []
    at.text_input(key="login-password").set_value("wrong one!")
    at.button[0].click().run()
    assert any("Wrong password" in plain(e.value) for e in at.error)
    at.text_input(key="login-password").set_value("open sesame 123")
    at.button[0].click().run()
    assert not at.exception and "engine-start" in [b.key for b in at.button]
    assert [r["action"] + ":" + r["outcome"] for r in gated.history.audit_log(2)] == ["login:ok", "login:failed"]


def test_memory_alarm_toast_banner_and_restart_with_a_smaller_cache(
    settings_with_model, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    import psutil

    for key, value in register_fake().items():
        monkeypatch.setenv(key, value)
    floor = psutil.virtual_memory().total // 2**20 + 1024  # above all memory: the alarm must rise
    runtime = Runtime(
        settings_with_model.replace(flavor="fake", memory_floor_mib=floor, cache_ram_mib=512), sampler=True
    )
    runtime.start_background()
    set_runtime(runtime)
    try:
        runtime.engine.start(runtime.default_spec(MODEL, ctx=1024))
        runtime.engine.wait(60)
        alarm = wait_for(lambda: runtime.alarm.current, 20, 0.2)
        at = app()
        assert any("Memory is low" in str(t.value) for t in at.toast)  # on whatever page is open
        assert "Memory is low" in texts(at) and "memory alarm" in texts(at)
        size = alarm.suggested_cache_ram_mib
        at.button(key="engine-alarm-restart").click().run()
        assert not at.exception
        st = wait_for(lambda: (s := runtime.engine.status(max_age_s=0)).spec and s, 20)
        assert st.spec.cache_ram_mib == size < 512
        actions = [a["action"] for a in runtime.history.audit_log(30)]
        assert "memory alarm" in actions and "restart with a smaller cache" in actions
    finally:
        try:
            runtime.engine.stop(timeout_s=5)
        except Exception:
            pass
        set_runtime(None)
