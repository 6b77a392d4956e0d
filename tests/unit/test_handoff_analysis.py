"""The provider template and the client-check analysis, on plain values."""

from __future__ import annotations

import ast

import pytest

from zoe_panel.handoff.clientcheck import EngineFacts, analyse
from zoe_panel.handoff.llamacpp_provider import request_timeout
from zoe_panel.handoff.provider import ProviderTarget, render
from zoe_panel.handoff.recorder import Exchange

FACTS = EngineFacts("http://e", "k", ("SmolLM2",), 80.0, 512)


def test_render_fills_the_engine_constants_and_stays_valid_python() -> None:
    text = render(ProviderTarget("http://10.0.0.2:8088", "SmolLM2", 9.5, 512, "#   x on y"))
    ast.parse(text)
    assert "BASE_URL = 'http://10.0.0.2:8088'" in text and "MODEL = 'SmolLM2'" in text
    assert "MEASURED_TOKENS_PER_S = 9.5\n" in text and "DEFAULT_MAX_TOKENS = 512" in text
    unmeasured = render(ProviderTarget("http://e", "m", None, 256))
    assert "MEASURED_TOKENS_PER_S = 10.0  # not measured yet" in unmeasured
    with pytest.raises(ValueError, match="styles are zoe"):
        render(ProviderTarget("http://e", "m", None, 256), style="langchain")


def test_timeouts_follow_the_measured_speed() -> None:
    orin_7b = request_timeout(512, 10.0)
    assert orin_7b.read is not None and orin_7b.read > 100  # 512 tokens at 10 tok/s, twice over
    assert request_timeout(64, 1000.0).read == pytest.approx(30.128)


def chat(status: int = 200, body: dict | None = None, streamed: bool = False, delta: int = 0) -> Exchange:
    b = {"model": "SmolLM2", "max_tokens": 64, "stream": streamed} if body is None else body
    return Exchange("POST", "/v1/chat/completions", True, b, status, streamed, delta)


OK = {
    "load": {"ok": True},
    "generate": {"ok": True, "chars": 12, "s": 0.4},
    "stream": {"ok": True, "chunks": 5, "chars": 20},
}


def names(checks) -> dict[str, bool]:  # type: ignore[no-untyped-def]
    return {c.name: c.ok for c in checks}


def test_a_good_client_passes_everything() -> None:
    assert all(names(analyse(OK, [chat(), chat(streamed=True, delta=20)], FACTS)).values())


def test_empty_stream_chunks_are_traced_to_where_the_text_is() -> None:
    res = {**OK, "stream": {"ok": True, "chunks": 56, "chars": 0, "empty": 56}}
    (c,) = [c for c in analyse(res, [chat(), chat(streamed=True, delta=90)], FACTS) if c.name == "reply (streaming)"]
    assert not c.ok and "56 chunks, all empty" in c.detail and "choices[0].delta.content" in c.fix


def test_a_timeout_is_put_against_the_measured_speed() -> None:
    res = {**OK, "generate": {"ok": False, "error": "ReadTimeout", "message": "", "s": 30.0}}
    body = {"model": "SmolLM2", "max_tokens": 4000}
    (c,) = [c for c in analyse(res, [chat(body=body)], FACTS) if c.name == "reply (no streaming)"]
    assert not c.ok and "50 s" in c.detail and "100 s" in c.fix


def test_401_404_model_and_max_tokens() -> None:
    got = names(analyse(OK, [chat(status=401)], FACTS))
    assert not got["API key"]
    wrong = Exchange("POST", "/chat/completions", True, {"model": "SmolLM2", "max_tokens": 8}, 404)
    assert not names(analyse(OK, [wrong], FACTS))["endpoint"]
    assert not names(analyse(OK, [chat(body={"messages": []})], FACTS))["model id"]
    assert not names(analyse(OK, [chat(body={"model": "gpt-4o", "max_tokens": 8})], FACTS))["model id"]
    assert not names(analyse(OK, [chat(body={"model": "SmolLM2"})], FACTS))["max_tokens"]


def test_a_client_that_does_not_load_is_said_so() -> None:
    checks = analyse({"load": {"ok": False, "error": "TypeError", "message": "needs api_key"}}, [], FACTS)
    assert [c.name for c in checks] == ["engine READY", "client loads"] and not checks[1].ok
