"""A recording proxy between a client under test and the engine: every request (path, whether it
carried a key, its JSON body) and what the engine answered (status, and for streams whether any
text was in ``choices[].delta.content``), passed through unchanged, streams included."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}


@dataclass
class Exchange:
    method: str
    path: str
    authorized: bool
    body: dict[str, Any] | None
    status: int = 0
    streamed: bool = False
    delta_text_chars: int = 0  # text the engine sent in choices[].delta.content
    other_text_fields: list[str] = field(default_factory=list)  # where else text was
    tail: str = ""  # an SSE line split across chunks


class RecordingProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> RecordingProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                proxy._forward(self, "GET")

            def do_POST(self) -> None:
                proxy._forward(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _forward(self, h: BaseHTTPRequestHandler, method: str) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        ex = Exchange(method, h.path, bool(h.headers.get("Authorization")), body if isinstance(body, dict) else None)
        with self._lock:
            self.exchanges.append(ex)
        headers = {k: v for k, v in h.headers.items() if k.lower() not in HOP_BY_HOP}
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(600.0, connect=5.0)) as c,
                c.stream(method, self.upstream + h.path, content=raw, headers=headers) as r,
            ):
                ex.status = r.status_code
                ex.streamed = r.headers.get("content-type", "").startswith("text/event-stream")
                h.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in HOP_BY_HOP:
                        h.send_header(k, v)
                h.send_header("Transfer-Encoding", "chunked")
                h.end_headers()
                for chunk in r.iter_raw():
                    if ex.streamed:
                        self._note_stream(ex, chunk)
                    h.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    h.wfile.flush()
                h.wfile.write(b"0\r\n\r\n")
        except (httpx.HTTPError, OSError):
            return  # the client went away (a timeout on its side): nothing more to pass on

    def _note_stream(self, ex: Exchange, chunk: bytes) -> None:
        lines = (ex.tail + chunk.decode("utf-8", "replace")).split("\n")
        ex.tail = lines.pop()
        for line in lines:
            line = line.rstrip("\r")
            if not line.startswith("data: ") or line.strip() == "data: [DONE]":
                continue
            try:
                payload = json.loads(line[6:])
            except ValueError:
                continue
            for choice in payload.get("choices") or []:
                delta = choice.get("delta") or {}
                ex.delta_text_chars += len(delta.get("content") or "")
                for name in ("text", "message"):
                    if choice.get(name) and name not in ex.other_text_fields:
                        ex.other_text_fields.append(name)
