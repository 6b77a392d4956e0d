"""Chat with the running engine over OpenAI-style ``/v1/chat/completions`` (httpx, SSE).

Parses both llama-server's current stream (usage on a trailing chunk, ``timings`` on the last
chunk, ``data: {"error":..}``) and older builds (``error: {...}`` lines, usage on the finish
chunk), and llama-cpp-python's (no usage, no timings). Time-to-first-token is always measured
here; prompt and generation speeds come from the engine's ``timings`` when present, else from
the client's clock, and ``ChatStats.source`` says which.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from zoe_panel.errors import ChatError


@dataclass(frozen=True)
class ChatParams:
    temperature: float = 0.7
    max_tokens: int = 256
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    repeat_penalty: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        for name in ("top_p", "top_k", "min_p", "repeat_penalty", "seed"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.stop:
            out["stop"] = list(self.stop)
        return out


@dataclass
class ChatStats:
    ttft_ms: float | None = None
    prompt_tokens: int | None = None
    prompt_tokens_per_s: float | None = None
    completion_tokens: int = 0
    gen_tokens_per_s: float | None = None
    elapsed_ms: float = 0.0
    finish_reason: str | None = None
    cached_tokens: int | None = None
    source: str = "client"  # "engine" when the engine's timings were used
    draft_n: int | None = None  # speculative decoding: tokens drafted, and of those accepted
    draft_accepted: int | None = None

    @property
    def acceptance(self) -> float | None:
        return self.draft_accepted / self.draft_n if self.draft_n and self.draft_accepted is not None else None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["acceptance"] = self.acceptance
        return data


@dataclass(frozen=True)
class ChatDelta:
    kind: str  # "content" | "reasoning" | "progress"
    text: str = ""
    progress: dict[str, Any] | None = None


def iter_sse(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """SSE lines -> (field, data) per event. Comments (``:`` keep-alives) are skipped."""
    name, data = "", list[str]()
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield name or "data", "\n".join(data)
            name, data = "", []
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if key == "data":
            data.append(value)
            name = name or "data"
        elif key in ("error", "event"):
            if key == "error":  # old llama-server: ``error: {...}`` as its own field
                name = "error"
                data.append(value)
            else:
                name = value
    if data:
        yield name or "data", "\n".join(data)


def _error_text(payload: Any) -> str:
    if isinstance(payload, dict):
        err = payload.get("error", payload)
        if isinstance(err, dict):
            return str(err.get("message") or err)
        return str(err)
    return str(payload)


def explain_http_error(status: int, body: str) -> str:
    """Turn an engine's error response into what the operator should do."""
    try:
        payload = json.loads(body)
    except ValueError:
        payload = {"error": {"message": body[:300]}}
    err = payload.get("error", {}) if isinstance(payload, dict) else {}
    if not isinstance(err, dict):
        err = {"message": str(err)}
    message = str(err.get("message") or payload.get("detail") or body[:300])
    kind = err.get("type", "")
    if kind == "exceed_context_size_error" or "exceeds the available context" in message:
        n_prompt, n_ctx = err.get("n_prompt_tokens"), err.get("n_ctx")
        numbers = f" ({n_prompt} prompt tokens, context {n_ctx})" if n_prompt and n_ctx else ""
        return (
            f"the conversation is longer than the engine's context{numbers}: Clear the chat, "
            "shorten the prompt, or restart the engine with a larger context size"
        )
    if status == 401:
        return "the engine wants an API key and the panel's key was refused: check the engine's API key setting"
    if status == 503:
        return "the engine is still loading the model; wait for READY"
    return f"engine answered HTTP {status}: {message}"


class ChatStream:
    """Iterate for deltas; ``text``, ``reasoning`` and ``stats`` fill in as it goes.

    Closing it (or breaking out of the loop) closes the HTTP stream, which makes llama-server
    stop generating for this request.
    """

    def __init__(self, client: httpx.Client, url: str, body: dict[str, Any], headers: dict[str, str]) -> None:
        self._client = client
        self._url = url
        self._body = body
        self._headers = headers
        self.text = ""
        self.reasoning = ""
        self.stats = ChatStats()
        self.started = 0.0
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.done = False
        self.error: str | None = None
        self._response: httpx.Response | None = None
        self._timings: dict[str, Any] | None = None
        self._usage: dict[str, Any] | None = None

    def live(self) -> dict[str, float]:
        """Elapsed, tokens so far and tokens/s while the reply streams."""
        now = self.last_at if self.done and self.last_at else time.perf_counter()
        elapsed = now - self.started if self.started else 0.0
        n = self.stats.completion_tokens
        gen_s = (now - self.first_at) if self.first_at else 0.0
        rate = (n - 1) / gen_s if n > 1 and gen_s > 0 else 0.0
        return {"elapsed_s": elapsed, "tokens": float(n), "tokens_per_s": rate}

    def _open(self) -> httpx.Response:
        """Send the request. llama-server may close a kept-alive connection just as it is reused;
        that fails before any response, so the engine never saw the request: send it once more."""
        request = self._client.build_request("POST", self._url, json=self._body, headers=self._headers)
        try:
            return self._client.send(request, stream=True)
        except (httpx.RemoteProtocolError, httpx.ReadError):
            return self._client.send(request, stream=True)

    def __iter__(self) -> Iterator[ChatDelta]:
        self.started = time.perf_counter()
        try:
            r = self._open()
            self._response = r
            try:
                if r.status_code != 200:
                    raise ChatError(explain_http_error(r.status_code, r.read().decode("utf-8", "replace")))
                for kind, data in iter_sse(r.iter_lines()):
                    yield from self._handle(kind, data)
                    if self.done:
                        break
            finally:
                r.close()
        except httpx.ConnectError as e:
            self._fail(f"cannot reach the engine at {self._url} ({e}); is it READY?")
        except (httpx.RemoteProtocolError, httpx.ReadError) as e:
            self._fail(f"the engine closed the connection mid-reply ({type(e).__name__}); the partial reply is kept")
        except httpx.TimeoutException:
            self._fail("the engine stopped answering (timeout); the partial reply is kept")
        finally:
            self._finish()

    def _fail(self, message: str) -> None:
        self.error = message
        raise ChatError(message)

    def _handle(self, kind: str, data: str) -> Iterator[ChatDelta]:
        if data.strip() == "[DONE]":
            self.done = True
            return
        try:
            payload = json.loads(data)
        except ValueError:
            return
        if kind == "error" or (isinstance(payload, dict) and "error" in payload and "choices" not in payload):
            self._fail(f"the engine reported an error mid-reply: {_error_text(payload)}")
        if not isinstance(payload, dict):
            return
        if payload.get("timings"):
            self._timings = payload["timings"]
        if payload.get("usage"):
            self._usage = payload["usage"]
        if payload.get("prompt_progress"):
            yield ChatDelta("progress", progress=payload["prompt_progress"])
        for choice in payload.get("choices") or []:
            delta = choice.get("delta") or {}
            for key, kind_name in (("reasoning_content", "reasoning"), ("content", "content")):
                piece = delta.get(key)
                if piece:
                    now = time.perf_counter()
                    if self.first_at is None:
                        self.first_at = now
                    self.last_at = now
                    self.stats.completion_tokens += 1
                    if kind_name == "content":
                        self.text += piece
                    else:
                        self.reasoning += piece
                    yield ChatDelta(kind_name, piece)
            if choice.get("finish_reason"):
                self.stats.finish_reason = choice["finish_reason"]

    def _finish(self) -> None:
        end = time.perf_counter()
        st = self.stats
        st.elapsed_ms = (end - self.started) * 1000.0
        if self.first_at is not None:
            st.ttft_ms = (self.first_at - self.started) * 1000.0
        client_tokens = st.completion_tokens
        if self._usage:
            st.prompt_tokens = self._usage.get("prompt_tokens")
            st.completion_tokens = int(self._usage.get("completion_tokens") or client_tokens)
            details = self._usage.get("prompt_tokens_details") or {}
            st.cached_tokens = details.get("cached_tokens")
        t = self._timings
        if t and t.get("predicted_per_second") is not None:
            st.source = "engine"
            st.prompt_tokens = t.get("prompt_n", st.prompt_tokens)
            st.prompt_tokens_per_s = t.get("prompt_per_second")
            st.gen_tokens_per_s = t.get("predicted_per_second")
            st.completion_tokens = int(t.get("predicted_n") or st.completion_tokens)
            st.cached_tokens = t.get("cache_n", st.cached_tokens)
            if t.get("draft_n") is not None:
                st.draft_n = int(t["draft_n"])
                st.draft_accepted = int(t.get("draft_n_accepted") or 0)
        elif self.first_at is not None and self.last_at is not None and client_tokens > 1:
            # Client clock: tokens after the first over the time since the first arrived.
            span = self.last_at - self.first_at
            st.gen_tokens_per_s = (client_tokens - 1) / span if span > 0 else None

    def close(self) -> None:
        if self._response is not None:
            self._response.close()


@dataclass
class ChatClient:
    base_url: str
    api_key: str = ""
    read_timeout_s: float = 600.0
    transport: httpx.BaseTransport | None = None
    _client: httpx.Client | None = field(default=None, init=False, repr=False)

    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                base_url=self.base_url,
                timeout=httpx.Timeout(connect=5.0, read=self.read_timeout_s, write=30.0, pool=5.0),
                transport=self.transport,
            )
        return self._client

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def stream(
        self,
        messages: list[dict[str, str]],
        params: ChatParams | None = None,
        *,
        model: str = "",
        return_progress: bool = False,
    ) -> ChatStream:
        params = params or ChatParams()
        body: dict[str, Any] = {
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            **params.body(),
        }
        if model:
            body["model"] = model
        if return_progress:
            body["return_progress"] = True
        return ChatStream(self._http(), "/v1/chat/completions", body, self.headers())

    def complete(
        self, messages: list[dict[str, str]], params: ChatParams | None = None, *, model: str = ""
    ) -> tuple[str, ChatStats]:
        """Stream to the end and return (text, stats): what the CLI and suites use."""
        stream = self.stream(messages, params, model=model)
        for _ in stream:
            pass
        return stream.text, stream.stats

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
