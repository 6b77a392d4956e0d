"""The fake engine for page-wiring tests: a tiny real HTTP server speaking the part of llama-server
the panel uses, registered through the real flavour registry, so the Engine, Chat, Endpoint and
History pages run without llama-server. Whatever the pages show of an engine is also tested on the
real one (tests/integration).

    python tests/fake_engine.py --port P [--api-key K] [--alias A] [--load-s 0.3] [--fail-load]

It prints llama-server-like load lines (model buffer, KV cache, compute buffer, listening) so the
load timeline and History have events, answers /health 503 while "loading" then 200, and serves
/v1/models, /v1/chat/completions (streamed or not, with usage and timings), /metrics and /slots.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "the",
    "lazy",
    "dog",
    "while",
    "the",
    "lighthouse",
    "keeper",
    "watches",
    "the",
    "sea",
]


class FakeEngine:
    def __init__(self, port: int, api_key: str, alias: str, load_s: float) -> None:
        self.port, self.api_key, self.alias = port, api_key, alias
        self.ready_at = time.monotonic() + load_s
        self.tokens_predicted = 0
        self.busy = 0
        self.lock = threading.Lock()

    def ready(self) -> bool:
        return time.monotonic() >= self.ready_at

    def reply(self, n: int) -> list[str]:
        return [(" " if i else "") + WORDS[i % len(WORDS)] for i in range(n)]


def handler(engine: FakeEngine) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, body: Any, ctype: str = "application/json") -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            if engine.api_key and self.headers.get("Authorization") != f"Bearer {engine.api_key}":
                self._send(401, {"error": {"message": "Invalid API Key", "type": "authentication_error", "code": 401}})
                return False
            return True

        def do_GET(self) -> None:
            if self.path in ("/health", "/v1/health"):
                ok = engine.ready()
                self._send(200 if ok else 503, {"status": "ok" if ok else "loading model"})
            elif self.path in ("/v1/models", "/models"):
                self._send(200, {"object": "list", "data": [{"id": engine.alias, "object": "model"}]})
            elif not self._authorized():
                return
            elif self.path == "/metrics":
                text = (
                    f"llamacpp:tokens_predicted_total {engine.tokens_predicted}\n"
                    f"llamacpp:requests_processing {engine.busy}\nllamacpp:requests_deferred 0\n"
                )
                self._send(200, text.encode(), "text/plain")
            elif self.path == "/slots":
                self._send(200, [{"id": 0, "is_processing": engine.busy > 0}])
            else:
                self._send(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:
            if not self._authorized():
                return
            if not self.path.endswith("/chat/completions"):
                self._send(404, {"error": {"message": "not found"}})
                return
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            n = int(body.get("max_tokens") or 32)
            words = engine.reply(min(n, 200))
            with engine.lock:
                engine.busy += 1
            try:
                if body.get("stream"):
                    self._stream(words)
                else:
                    self._whole(words)
            finally:
                with engine.lock:
                    engine.busy -= 1
                    engine.tokens_predicted += len(words)

        def _timings(self, n: int, seconds: float) -> dict[str, Any]:
            return {
                "prompt_n": 8,
                "prompt_ms": 4.0,
                "prompt_per_second": 2000.0,
                "predicted_n": n,
                "predicted_ms": seconds * 1000,
                "predicted_per_second": n / seconds if seconds else 0.0,
            }

        def _whole(self, words: list[str]) -> None:
            t0 = time.monotonic()
            time.sleep(0.005 * len(words))
            self._send(
                200,
                {
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "".join(words)},
                            "finish_reason": "length",
                        }
                    ],
                    "usage": {"prompt_tokens": 8, "completion_tokens": len(words), "total_tokens": 8 + len(words)},
                    "timings": self._timings(len(words), time.monotonic() - t0),
                },
            )

        def _stream(self, words: list[str]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            t0 = time.monotonic()

            def chunk(payload: dict[str, Any] | str) -> None:
                data = f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n".encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            try:
                for w in words:
                    time.sleep(0.005)
                    chunk({"choices": [{"index": 0, "delta": {"content": w}}]})
                final = {
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
                    "usage": {"prompt_tokens": 8, "completion_tokens": len(words), "total_tokens": 8 + len(words)},
                    "timings": self._timings(len(words), time.monotonic() - t0),
                }
                chunk(final)
                chunk("[DONE]")
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass

    return Handler


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--api-key", default=os.environ.get("FAKE_ENGINE_API_KEY", ""))
    p.add_argument("--alias", default="fake-model")
    p.add_argument("--ctx", type=int, default=4096)
    p.add_argument("--load-s", type=float, default=0.3)
    p.add_argument("--fail-load", action="store_true", help="die like an engine out of memory at KV allocation")
    args = p.parse_args()
    say = lambda text: print(text, flush=True)  # noqa: E731
    say(f"main: loading model {args.alias}")
    say("load_tensors:          CPU model buffer size =    95.34 MiB")
    if args.fail_load:
        say("ggml_backend_cpu_buffer_type_alloc_buffer: failed to allocate buffer of size 96636764160")
        say("llama_init_from_model: failed to initialize the context: failed to allocate buffer for kv cache")
        return 1
    engine = FakeEngine(args.port, args.api_key, args.alias, args.load_s)
    server = ThreadingHTTPServer((args.host, args.port), handler(engine))
    server.daemon_threads = True
    # SmolLM2's shape (30 layers, 3 KV heads of 64) with an f16 cache, as llama-server prints it
    kv = args.ctx * 30 * 192 * 4 / 2**20
    say(f"llama_kv_cache:        CPU KV buffer size =    {kv:.2f} MiB")
    say(
        f"llama_kv_cache: size =   {kv:.2f} MiB ({args.ctx:6d} cells,  30 layers,  4/1 seqs), "
        f"K (f16):   {kv / 2:.2f} MiB, V (f16):   {kv / 2:.2f} MiB"
    )
    say("llama_context:        CPU compute buffer size =    90.51 MiB")
    say(f"main: server is listening on http://{args.host}:{args.port}")
    server.serve_forever()
    return 0


@dataclass(frozen=True)
class FakeSpecArgs:
    """What the fake flavour passes: enough of a spec to behave like the engine it stands for."""

    port: int
    api_key: str
    alias: str
    ctx: int


SCRIPT = Path(__file__).resolve()

if __name__ == "__main__":
    sys.exit(main())
