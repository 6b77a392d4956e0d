"""The process backend with the real engines on the real SmolLM2 model."""

from __future__ import annotations

import os
import signal
import socket
import threading
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
from conftest import require, require_llama_server, wait_for

from zoe_panel.chat import ChatClient, ChatParams
from zoe_panel.engine.base import EngineState
from zoe_panel.engine.binary import python_server_available
from zoe_panel.errors import (
    BinaryNotFound,
    ChatError,
    ConfigError,
    EngineBusyError,
    EngineError,
    EngineNotRunning,
    InvalidModelError,
    ModelStoreError,
    PortInUseError,
)
from zoe_panel.runtime import Runtime

pytestmark = pytest.mark.integration
MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(autouse=True)
def _need_llama_server(settings_with_model) -> None:  # type: ignore[no-untyped-def]
    require_llama_server(settings_with_model)


def engine_processes(model_dir: Path) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if str(model_dir) in cmd:
            out.append(p)
    return out


def test_llama_server_start_chat_stop(runtime: Runtime) -> None:
    status = runtime.engine.start(runtime.default_spec(MODEL, ctx=2048))
    assert status.state in (EngineState.STARTING, EngineState.READY)
    status = runtime.engine.wait(60)
    assert status.state == EngineState.READY and status.pid
    assert psutil.Process(status.pid).name().startswith("llama-server")

    client = runtime.chat_client()
    text, stats = client.complete([{"role": "user", "content": "Say hello."}], ChatParams(max_tokens=16, seed=1))
    assert text.strip() and stats.source == "engine" and stats.completion_tokens > 0
    assert stats.gen_tokens_per_s is not None and stats.ttft_ms is not None  # filled from the engine's timings

    log = "\n".join(runtime.engine.logs(400))
    assert "model buffer size" in log and "KV buffer size" in log  # -lv 4 prints the load lines
    if "CUDA0" not in log:  # the CPU build: -ngl 999 is accepted and ignored, and the panel says so
        assert status.spec and status.spec.n_gpu_layers > 0
        assert "runs on the CPU" in (runtime.engine.placement(status) or "")

    runtime.engine.stop(timeout_s=10)
    assert runtime.engine.status(max_age_s=0).state == EngineState.STOPPED
    assert not engine_processes(runtime.store.root)


def test_python_server_flavour(runtime: Runtime) -> None:
    ok, why = python_server_available()
    require(ok, why)
    spec = runtime.default_spec(MODEL, ctx=1024, flavor="llama-cpp-python", parallel=1)
    runtime.engine.start(spec)
    status = runtime.engine.wait(120)
    assert status.state == EngineState.READY and status.spec and status.spec.flavor == "llama-cpp-python"
    client = runtime.chat_client()
    stream = client.stream([{"role": "user", "content": "Count to five."}], ChatParams(max_tokens=24, seed=3))
    pieces = [d.text for d in stream if d.kind == "content"]
    assert len(pieces) > 1 and stream.stats.source == "client" and stream.stats.gen_tokens_per_s
    # a liveness check during the next stream must not cut it short (--interrupt_requests false)
    stream = client.stream([{"role": "user", "content": "Tell a story."}], ChatParams(max_tokens=40, seed=3))
    for n, _ in enumerate(stream, start=1):
        if n == 3:
            assert runtime.engine.status(max_age_s=0).state == EngineState.READY
    assert stream.stats.finish_reason == "length" and stream.stats.completion_tokens >= 35
    runtime.engine.stop(timeout_s=10)
    assert not engine_processes(runtime.store.root)


def test_a_new_runtime_reattaches_and_never_starts_a_second_engine(runtime: Runtime) -> None:
    runtime.engine.start(runtime.default_spec(MODEL, ctx=1024))
    first = runtime.engine.wait(60)
    other = Runtime(runtime.settings, sampler=False)  # a restarted panel
    again = other.engine.status(max_age_s=0)
    assert again.state == EngineState.READY and again.pid == first.pid and again.run_id == first.run_id
    with pytest.raises(EngineBusyError, match="already running"):
        other.engine.start(other.default_spec(MODEL, ctx=1024))
    assert len([p for p in engine_processes(runtime.store.root) if "llama-server" in p.name()]) == 1
    other.engine.stop()
    assert runtime.engine.status(max_age_s=0).state == EngineState.STOPPED


def test_two_simultaneous_starts_give_one_engine(runtime: Runtime) -> None:
    panels = [Runtime(runtime.settings, sampler=False) for _ in range(4)]
    barrier = threading.Barrier(len(panels))
    results: list[str] = []

    def press(rt: Runtime) -> None:
        barrier.wait()
        try:
            rt.engine.start(rt.default_spec(MODEL, ctx=1024))
            results.append("started")
        except EngineBusyError:
            results.append("busy")

    threads = [threading.Thread(target=press, args=(p,)) for p in panels]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["busy", "busy", "busy", "started"]
    runtime.engine.wait(60)
    assert len([p for p in engine_processes(runtime.store.root) if "llama-server" in p.name()]) == 1


def test_stop_when_nothing_runs_is_a_clear_error(runtime: Runtime) -> None:
    with pytest.raises(EngineNotRunning, match="nothing to stop"):
        runtime.engine.stop()


def test_chat_when_not_ready_is_refused(runtime: Runtime) -> None:
    with pytest.raises(EngineNotRunning, match="no engine is READY"):
        runtime.chat_client()


def test_missing_model_and_not_gguf(runtime: Runtime) -> None:
    with pytest.raises(ModelStoreError, match="not found"):
        runtime.default_spec("nope.gguf")
    (runtime.store.root / "fake.gguf").write_bytes(b"not a gguf at all" * 100)
    with pytest.raises(InvalidModelError, match="not a GGUF file"):
        runtime.default_spec("fake.gguf")
    assert runtime.engine.status(max_age_s=0).state == EngineState.STOPPED


def test_port_in_use_names_the_port(runtime: Runtime) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"port {port}"):
            runtime.engine.start(runtime.default_spec(MODEL, port=port))
    assert runtime.engine.status(max_age_s=0).state == EngineState.STOPPED


def test_a_flag_this_build_dropped_is_refused_before_start(runtime: Runtime) -> None:
    """--mlock is on the allow-list (older llama.cpp has it); the built engine's --help lacks it."""
    with pytest.raises(ConfigError, match="--mlock is not understood by this llama-server"):
        runtime.engine.start(runtime.default_spec(MODEL, ctx=1024, extra_args=("--mlock",)))
    assert runtime.engine.status(max_age_s=0).state == EngineState.STOPPED
    runtime.engine.start(runtime.default_spec(MODEL, ctx=1024, extra_args=("--load-mode", "mlock")))
    assert runtime.engine.wait(60).state == EngineState.READY


def test_missing_binary_says_how_to_get_one(runtime: Runtime) -> None:
    broken = Runtime(runtime.settings.replace(llama_server="/nonexistent/llama-server"), sampler=False)
    with pytest.raises(BinaryNotFound, match="make llama-server"):
        broken.engine.start(broken.default_spec(MODEL))


def test_engine_exiting_during_load_is_failed_with_exit_code_and_log(runtime: Runtime, smollm2: Path) -> None:
    # A header that parses but whose tensor data was cut off: the panel lists it as corrupt and
    # refuses it; bypass the store check to see the engine's own failure path.
    bad = runtime.store.root / "cut.gguf"
    with smollm2.open("rb") as src:
        bad.write_bytes(src.read(40_000_000))
    spec = replace(runtime.default_spec(MODEL, ctx=1024), model=str(bad))
    runtime.engine.start(spec)
    with pytest.raises(EngineError, match="FAILED"):
        runtime.engine.wait(60)
    st = runtime.engine.status(max_age_s=0)
    assert st.state == EngineState.FAILED and st.exit_code not in (None, 0)
    assert "exit code" in st.reason and any("load" in line for line in st.log_tail)


def test_engine_killed_mid_reply_keeps_partial_text(runtime: Runtime) -> None:
    runtime.engine.start(runtime.default_spec(MODEL, ctx=2048))
    status = runtime.engine.wait(60)
    client = ChatClient(status.base_url or "", api_key=status.spec.api_key if status.spec else "")
    stream = client.stream(
        [{"role": "user", "content": "Write a long story about a dragon."}], ChatParams(max_tokens=400, seed=2)
    )
    with pytest.raises(ChatError, match="closed the connection|cannot reach"):
        for i, _ in enumerate(stream):
            if i == 5:
                os.kill(status.pid or 0, signal.SIGKILL)
    assert len(stream.text) > 0
    st = wait_for(lambda: (s := runtime.engine.status(max_age_s=0)).state == EngineState.FAILED and s)
    assert st.exit_code == 137 and "SIGKILL" in st.reason
    # the panel keeps working: a new engine starts after the failed one
    runtime.engine.start(runtime.default_spec(MODEL, ctx=1024))
    assert runtime.engine.wait(60).state == EngineState.READY


def test_oom_during_load_is_diagnosed_and_not_restarted(runtime: Runtime) -> None:
    """A context far beyond memory: llama.cpp cannot allocate the KV cache. Under the on-failure
    policy the supervisor must not restart a failed load, and the panel says what to change."""
    rt = Runtime(runtime.settings.replace(restart_policy="on-failure"), sampler=False)
    rt.engine.start(rt.default_spec(MODEL, ctx=4_194_304))
    with pytest.raises(EngineError) as e:
        rt.engine.wait(60, on_poll=rt.recording())
    assert "Out of memory allocating the KV cache" in str(e.value)
    assert "lower the context to 8192 tokens" in str(e.value)
    st = rt.engine.status(max_age_s=0)
    assert st.state == EngineState.FAILED and st.restarts == 0 and "not restarted" in st.reason
    d = rt.engine.diagnose(st)
    assert d is not None and d.kind == "oom" and d.fixes
    run = rt.history.runs()[0]
    assert run.outcome == "failed" and "Out of memory" in run.diagnosis and run.exit_code == 1
    assert any(ev.phase == "failure" for ev in rt.history.events(run.run_id))


def test_runs_are_recorded_with_version_peaks_and_calibration(runtime: Runtime) -> None:
    rt = Runtime(runtime.settings, sampler=True)  # the panel's sampler records the run
    rt.start_background()
    try:
        started = rt.engine.start(rt.default_spec(MODEL, ctx=2048))
        rt.engine.wait(60, on_poll=rt.recording())
        # the prompt cache and the checkpoints are bounded explicitly, never upstream's 8 GiB / 32
        cmdline = psutil.Process(rt.engine.engine_pid()).cmdline()
        assert cmdline[cmdline.index("--cache-ram") + 1] == str(started.spec.cache_ram_mib)
        assert 0 <= started.spec.cache_ram_mib < 8192 and "--ctx-checkpoints" in cmdline
        client = rt.chat_client()
        client.complete([{"role": "user", "content": "hi"}], ChatParams(max_tokens=8))
        run = wait_for(lambda: (r := rt.history.runs()[0]).peak_engine_rss_bytes and r.ready_rss_bytes and r, 20)
        assert "build" in run.engine_version and run.time_to_ready_s > 0
        # READY level and the binary's own pages are recorded (the estimate's process part, measured)
        assert run.ready_rss_bytes > 50 * 2**20 and 5 * 2**20 < (run.binary_rss_bytes or 0) < 60 * 2**20
        assert run.estimate["kv_bytes"] == 45 * 2**20 and run.spec["ctx"] == 2048
        events = rt.history.events(run.run_id)
        assert {"model_buffer", "kv_cache", "compute_buffer", "listening"} <= {e.phase for e in events}
        rt.engine.stop()
        cal = rt.memory.calibration(MODEL)
        assert cal["runs"] == 1 and 0.5 <= cal["factor"] <= 3.0 and "measured run" in cal["note"]
        spec = rt.default_spec(MODEL, ctx=2048)
        est = rt.memory.estimate(spec)
        assert est.calibration == cal
        raw = rt.memory.estimate(spec, calibrated=False)
        assert est.at_ready_bytes == int(raw.at_ready_bytes * cal["factor"]) and raw.calibration == {}
        assert est.after_load_bytes == raw.after_load_bytes  # caps, not scaled
    finally:
        rt.close()
