"""ChatSession over streams recorded from the real llama-server: partial replies, Stop, history edits."""

import json
from pathlib import Path

import httpx
import pytest

from zoe_panel.chat import ChatClient, ChatParams
from zoe_panel.chat_session import ChatSession, stats_line
from zoe_panel.errors import ChatError

STREAMS = Path(__file__).parent.parent / "data" / "streams"


def client(name: str) -> ChatClient:
    body = (STREAMS / name).read_bytes()
    return ChatClient("http://e", transport=httpx.MockTransport(lambda r: httpx.Response(200, content=body)))


def test_a_full_reply_is_kept_with_engine_stats() -> None:
    chat = ChatSession(system="Be brief.")
    chat.ask("hello")
    text = "".join(chat.stream_text(client("llama-server-0c1e570-chat.sse"), ChatParams()))
    last = chat.last_assistant()
    assert last is not None and last.content == text and not last.stopped and last.stats["source"] == "engine"
    assert "tok/s" in stats_line(last.stats) and "engine timings" in stats_line(last.stats)
    assert chat.api_messages()[0] == {"role": "system", "content": "Be brief."}


def test_closing_the_generator_is_stop_and_keeps_the_partial_reply() -> None:
    chat = ChatSession()
    chat.ask("hello")
    gen = chat.stream_text(client("llama-server-0c1e570-chat.sse"), ChatParams())
    first = next(gen)
    gen.close()
    last = chat.last_assistant()
    assert last is not None and last.stopped and last.content == first and chat.pending is None


def test_an_error_mid_stream_keeps_the_partial_reply_and_the_error() -> None:
    chat = ChatSession()
    chat.ask("hello")
    text = "".join(chat.stream_text(client("llama-server-old-error.sse"), ChatParams()))
    last = chat.last_assistant()
    assert text == "Partial reply" and last is not None and "KV size" in (last.error or "")


def test_regenerate_edit_and_exports() -> None:
    chat = ChatSession()
    chat.ask("first")
    "".join(chat.stream_text(client("llama-server-0c1e570-chat.sse"), ChatParams()))
    assert chat.regenerate() and [t.role for t in chat.turns] == ["user"]
    "".join(chat.stream_text(client("llama-server-0c1e570-chat.sse"), ChatParams()))
    chat.edit_last("second")
    assert [(t.role, t.content) for t in chat.turns] == [("user", "second")]
    with pytest.raises(ChatError):
        chat.edit_last("   ")
    "".join(chat.stream_text(client("llama-cpp-python-0.3.36-chat.sse"), ChatParams()))
    data = json.loads(chat.to_json())
    assert [t["role"] for t in data["turns"]] == ["user", "assistant"] and data["turns"][1]["stats"][
        "source"
    ] == "client"
    assert "**user:** second" in chat.to_markdown()
    chat.clear()
    assert not chat.regenerate()


def test_stop_from_another_run_closes_the_stream_and_keeps_the_partial() -> None:
    import threading
    import time

    class Slow(httpx.SyncByteStream):
        def __init__(self) -> None:
            self.closed = False

        def __iter__(self):  # type: ignore[no-untyped-def]
            for i in range(200):
                if self.closed:
                    raise httpx.ReadError("closed")
                yield f'data: {{"choices":[{{"delta":{{"content":"w{i} "}}}}]}}\n\n'.encode()
                time.sleep(0.01)

        def close(self) -> None:
            self.closed = True

    body = Slow()
    c = ChatClient("http://e", transport=httpx.MockTransport(lambda r: httpx.Response(200, stream=body)))
    chat = ChatSession()
    chat.ask("go")
    t = threading.Thread(target=lambda: "".join(chat.stream_text(c, ChatParams())))
    t.start()
    while chat.stream is None or chat.stream.stats.completion_tokens < 5:
        time.sleep(0.01)
    assert chat.stop()
    t.join(5)
    last = chat.last_assistant()
    assert last is not None and last.stopped and not last.error and last.content.startswith("w0 w1")
    assert body.closed and [t.role for t in chat.turns] == ["user", "assistant"]
