"""SSE parsing and ChatStream over streams recorded from the real engines (data/streams)."""

from pathlib import Path

import httpx
import pytest

from zoe_panel.chat import ChatClient, explain_http_error, iter_sse
from zoe_panel.errors import ChatError

STREAMS = Path(__file__).parent.parent / "data" / "streams"


def client_for(body: bytes, status: int = 200) -> ChatClient:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"content-type": "text/event-stream"})

    return ChatClient("http://engine", transport=httpx.MockTransport(handler))


def run(name: str) -> tuple[str, object, list[str]]:
    c = client_for((STREAMS / name).read_bytes())
    stream = c.stream([{"role": "user", "content": "hi"}])
    deltas = [d.text for d in stream if d.kind == "content"]
    return stream.text, stream.stats, deltas


def test_iter_sse_skips_comments_and_keeps_old_error_field() -> None:
    lines = [": ping", "", 'data: {"a":1}', "", ":", 'error: {"message":"boom"}', "", "data: [DONE]"]
    assert list(iter_sse(lines)) == [("data", '{"a":1}'), ("error", '{"message":"boom"}'), ("data", "[DONE]")]


def test_llama_server_stream_uses_engine_timings() -> None:
    text, stats, deltas = run("llama-server-0c1e570-chat.sse")
    assert text == "".join(deltas) and len(deltas) >= 5
    assert stats.source == "engine"
    assert stats.completion_tokens == 12 and stats.prompt_tokens == 36
    assert stats.gen_tokens_per_s == pytest.approx(181.731, rel=1e-3)
    assert stats.prompt_tokens_per_s == pytest.approx(476.499, rel=1e-3)
    assert stats.finish_reason == "stop" and stats.ttft_ms is not None


def test_progress_events_and_timings_without_usage() -> None:
    c = client_for((STREAMS / "llama-server-0c1e570-progress-no-usage.sse").read_bytes())
    stream = c.stream([{"role": "user", "content": "x"}], return_progress=True)
    kinds = [d.kind for d in stream]
    assert "progress" in kinds and "content" in kinds
    assert stream.stats.source == "engine" and stream.stats.completion_tokens > 0


def test_python_server_stream_is_measured_by_the_client() -> None:
    text, stats, deltas = run("llama-cpp-python-0.3.36-chat.sse")
    assert text and stats.source == "client"
    assert stats.completion_tokens == len(deltas)
    assert stats.prompt_tokens is None and stats.finish_reason == "stop"


def test_old_error_field_mid_stream_keeps_partial_text() -> None:
    c = client_for((STREAMS / "llama-server-old-error.sse").read_bytes())
    stream = c.stream([{"role": "user", "content": "x"}])
    got = []
    with pytest.raises(ChatError, match="too big compared to KV size"):
        for d in stream:
            got.append(d.text)
    assert stream.text == "Partial reply" == "".join(got)


def test_new_error_payload_mid_stream() -> None:
    body = b'data: {"choices":[{"delta":{"content":"a"}}]}\n\ndata: {"error":{"message":"slot died"}}\n\n'
    stream = client_for(body).stream([])
    with pytest.raises(ChatError, match="slot died"):
        list(stream)
    assert stream.text == "a"


def test_context_overflow_says_the_numbers_and_the_fix() -> None:
    body = (STREAMS / "llama-server-0c1e570-exceed-context.json").read_bytes()
    with pytest.raises(ChatError) as e:
        list(client_for(body, status=400).stream([]))
    assert "3031 prompt tokens, context 2048" in str(e.value) and "larger context" in str(e.value)


def test_http_errors_are_explained() -> None:
    assert "API key" in explain_http_error(401, '{"detail":"Invalid API key"}')
    assert "loading" in explain_http_error(503, '{"error":{"message":"Loading model"}}')


def test_connection_refused_is_a_chat_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    c = ChatClient("http://engine", transport=httpx.MockTransport(handler))
    with pytest.raises(ChatError, match="cannot reach the engine"):
        list(c.stream([]))
