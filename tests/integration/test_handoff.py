"""Handing the engine to the Zoe assistant (issue 14), on the real engine: the generated provider,
the check of a user's own client on fixture clients with known defects, and an engine that
survives clients which set no max_tokens or go away mid-reply."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import faultkit
import httpx
import pytest
from conftest import engine_runtime

from zoe_panel.engine.metrics import engine_load
from zoe_panel.handoff.clientcheck import check_client, measure_engine
from zoe_panel.handoff.provider import provider_source
from zoe_panel.runtime import Runtime

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CLIENTS = ROOT / "tests/data/clients"
SMOL = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, smollm2: Path):  # type: ignore[no-untyped-def]
    """One READY engine for the module (ctx 4096, 2 slots, the default cap of 512 tokens)."""
    import os

    from conftest import free_port, link_model

    from zoe_panel.settings import load_settings

    home = tmp_path_factory.mktemp("handoff")
    link_model(smollm2, home / "models")
    env = {"ZOE_HOME": str(home), "ZOE_ENGINE_PORT": str(free_port()), "ZOE_CACHE": os.environ.get("ZOE_CACHE", "")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update({k: v for k, v in env.items() if v})
    try:
        settings = load_settings()
        with engine_runtime(settings) as rt:
            rt.engine.start(rt.default_spec(SMOL, ctx=4096, parallel=2), backend="process")
            rt.engine.wait(120, on_poll=rt.recording())
            yield rt, settings
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _facts(rt: Runtime):  # type: ignore[no-untyped-def]
    st = rt.engine.status()
    return measure_engine(st.base_url or "", st.spec.api_key, st.spec.n_predict), st  # type: ignore[union-attr]


def test_the_generated_provider_answers_with_and_without_streaming(engine, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    rt, _ = engine
    st = rt.engine.status()
    rt.chat_client().complete(
        [{"role": "user", "content": "Hi"}], __import__("zoe_panel.chat").chat.ChatParams(max_tokens=32)
    )
    path = tmp_path / "llamacpp_provider.py"
    path.write_text(provider_source(rt))
    text = path.read_text()
    assert f"BASE_URL = '{st.base_url}'" in text and "MEASURED_TOKENS_PER_S = " in text
    monkeypatch.setenv("ZOE_LLM_API_KEY", st.spec.api_key)
    spec = importlib.util.spec_from_file_location("generated_provider", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]

    async def both() -> tuple[str, list[str]]:
        p = module.get_llm_provider()
        assert p is module.get_llm_provider()  # a singleton, as in Zoe
        whole = await p.generate("Name a color.", max_tokens=16, temperature=0, context="ignored")
        parts = [c async for c in p.generate_stream("Count to five.", max_tokens=24)]
        await p.aclose()
        return whole, parts

    whole, parts = asyncio.run(both())
    assert whole.strip() and parts and all(parts) and "".join(parts).strip()
    facts, _ = _facts(rt)
    checks = check_client(path, facts, env={"ZOE_LLM_API_KEY": st.spec.api_key})
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]
    faultkit.report(
        "the generated LlamaCppProvider against the running engine",
        "generate and generate_stream answer; every client check passes",
        f"{len(whole)} characters; {len(parts)} stream chunks; {len(checks)} checks pass",
        True,
    )


DEFECTS = {
    "vllm_seed.py": {"model id": "named no model", "max_tokens": "set no max_tokens", "reply (streaming)": "all empty"},
    "empty_stream.py": {"reply (streaming)": "choices[0].delta.content"},
    "short_timeout.py": {"reply (no streaming)": "timed out"},
    "no_key.py": {"API key": "401"},
    "wrong_path.py": {"endpoint": "404"},
    "wrong_model.py": {"model id": "'gpt-4o'"},
    "no_max_tokens.py": {"max_tokens": "cap of 512 tokens"},
}


@pytest.mark.parametrize("fixture", sorted(DEFECTS))
def test_client_check_names_each_defect_and_its_fix(engine, fixture: str) -> None:  # type: ignore[no-untyped-def]
    rt, _ = engine
    facts, st = _facts(rt)
    checks = {c.name: c for c in check_client(CLIENTS / fixture, facts, env={"ZOE_LLM_API_KEY": st.spec.api_key})}
    failed = {n for n, c in checks.items() if not c.ok}
    assert set(DEFECTS[fixture]) <= failed, checks
    for name, phrase in DEFECTS[fixture].items():
        assert phrase in checks[name].detail + checks[name].fix, checks[name]
        assert checks[name].fix
    faultkit.report(
        f"client-check on {fixture}",
        "names " + ", ".join(DEFECTS[fixture]),
        "; ".join(f"{n}: {checks[n].detail[:60]}" for n in DEFECTS[fixture]),
        True,
    )


def test_client_check_cli_exit_code_and_json(engine) -> None:  # type: ignore[no-untyped-def]
    rt, settings = engine
    done = subprocess.run(
        [sys.executable, "-m", "zoe_panel", "client-check", str(CLIENTS / "no_key.py"), "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=400,
    )
    assert done.returncode != 0
    data = json.loads(done.stdout)
    assert {"name", "ok", "detail", "fix"} <= set(data["checks"][0])
    assert any(c["name"] == "API key" and not c["ok"] for c in data["checks"])


def test_client_check_says_when_no_engine_is_ready(tmp_path: Path) -> None:
    checks = check_client(CLIENTS / "vllm_seed.py", None)
    assert [c.name for c in checks] == ["engine READY"] and not checks[0].ok and "start" in checks[0].fix


def _tokens_predicted(base: str, key: str) -> int:
    return int(engine_load(base, key).tokens_predicted_total or 0)


def test_a_client_without_max_tokens_gets_its_reply_within_a_30_s_timeout(engine) -> None:  # type: ignore[no-untyped-def]
    rt, _ = engine
    st = rt.engine.status()
    body = {"messages": [{"role": "user", "content": "Write a very long story about the sea."}]}
    t0 = time.monotonic()
    r = httpx.post(
        f"{st.base_url}/v1/chat/completions",
        json=body,
        timeout=30.0,
        headers={"Authorization": f"Bearer {st.spec.api_key}"},
    )
    took = time.monotonic() - t0
    usage = r.json()["usage"]
    assert r.status_code == 200 and usage["completion_tokens"] <= st.spec.n_predict
    faultkit.report(
        "a client with no max_tokens and a 30 s timeout (main: timed out, the engine ran on to the context's end)",
        f"the engine's cap ({st.spec.n_predict} tokens) ends the reply in time",
        f"{usage['completion_tokens']} tokens in {took:.1f} s",
        True,
    )


@pytest.mark.parametrize("stream", [False, True])
def test_an_abandoned_request_holds_a_slot_no_longer_than_the_cap(engine, stream: bool) -> None:  # type: ignore[no-untyped-def]
    """The client gives up after 1 s; what the engine does then is measured, and the next request
    starts within the cap's worth of tokens."""
    rt, _ = engine
    st = rt.engine.status()
    key = st.spec.api_key
    base = st.base_url or ""
    headers = {"Authorization": f"Bearer {key}"}
    facts, _ = _facts(rt)
    before = _tokens_predicted(base, key)
    body = {"messages": [{"role": "user", "content": "Write a very long story about the sea."}], "stream": stream}
    t_give_up = time.monotonic() + 1.0
    try:
        with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, headers=headers, timeout=1.0) as r:
            for _ in r.iter_lines():
                if time.monotonic() > t_give_up:
                    break  # a streaming client that gives up closes the connection mid-stream
    except httpx.TimeoutException:
        pass  # a non-streaming client's timeout: it gave up
    t0 = time.monotonic()
    nxt = {"messages": [{"role": "user", "content": "Say yes."}], "max_tokens": 4, "stream": True}
    ttft = None
    # both slots may be busy with the abandoned request's tail: a third client waits at most the cap
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=nxt, headers=headers, timeout=120) as r:
        for line in r.iter_lines():
            if line.startswith("data: ") and ttft is None:
                ttft = time.monotonic() - t0
    time.sleep(1.0)
    generated = _tokens_predicted(base, key) - before - 4
    bound = 3 * st.spec.n_predict / max(facts.tokens_per_s, 1.0) + 5
    assert ttft is not None and ttft < bound
    assert generated <= st.spec.n_predict
    faultkit.report(
        f"a {'streaming' if stream else 'non-streaming'} client gives up after 1 s",
        f"the abandoned request stops by the cap ({st.spec.n_predict}); the next starts in time",
        f"the abandoned request made {generated} tokens; the next one's TTFT {ttft:.2f} s",
        True,
    )
