"""Check the user's own LLM client against the running engine, and say what to fix.

The client's module runs in a child process (client_child.py) with a time limit, aimed at a
recording proxy in front of the engine; what it sent, what the engine answered and what the client
made of it become checks, each with the fix: a stream that yields only empty strings (the text is
in ``choices[0].delta.content``), a timeout shorter than the engine needs at its measured speed,
a missing key (401), a base URL with or without /v1 (404), a model id the engine does not serve,
requests without ``max_tokens``, an engine that is not READY.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from zoe_panel.handoff.recorder import Exchange, RecordingProxy

PROMPT = "Say hello in five words."
CALL_LIMIT_S = 150.0  # per call; longer than any sane client timeout, bounded all the same


@dataclass(frozen=True)
class ClientCheck:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EngineFacts:
    base_url: str
    api_key: str
    served: tuple[str, ...]  # model ids GET /v1/models lists
    tokens_per_s: float  # decode speed measured just now
    cap: int  # tokens the engine generates for a request that sets no max_tokens (0 = no cap)


def measure_engine(base_url: str, api_key: str, cap: int) -> EngineFacts:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    served: tuple[str, ...] = ()
    try:
        data = httpx.get(base_url + "/v1/models", headers=headers, timeout=10).json()
        served = tuple(str(m.get("id")) for m in data.get("data") or [])
    except (httpx.HTTPError, ValueError):
        pass
    speed = 0.0
    try:
        t0 = time.monotonic()
        r = httpx.post(
            base_url + "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "Count to twenty."}], "max_tokens": 32, "temperature": 0},
            headers=headers,
            timeout=120,
        )
        wall = time.monotonic() - t0
        body = r.json()
        speed = float((body.get("timings") or {}).get("predicted_per_second") or 0.0)
        if not speed:
            # an engine without llama.cpp's timings (vLLM): tokens over the whole request, prompt
            # included, a little under the decode speed, which keeps the timeout advice on the safe side
            tokens = int((body.get("usage") or {}).get("completion_tokens") or 0)
            speed = tokens / wall if tokens and wall > 0 else 0.0
    except (httpx.HTTPError, ValueError, TypeError):
        pass
    return EngineFacts(base_url, api_key, served, speed, cap)


def run_client(path: Path, class_name: str, base_url: str, *, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The child's JSON report (load, generate, stream)."""
    argv = [sys.executable, "-m", "zoe_panel.handoff.client_child", str(path), class_name or "-", base_url]
    argv += [PROMPT, str(CALL_LIMIT_S)]
    package_root = str(Path(__file__).resolve().parents[2])
    child_env = {**os.environ, **(env or {})}
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, child_env.get("PYTHONPATH", "")) if p)
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=2 * CALL_LIMIT_S + 30, env=child_env, check=False
        )
    except subprocess.TimeoutExpired:
        return {"load": {"ok": False, "error": "Timeout", "message": "the client did not finish in time"}}
    try:
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"load": {"ok": False, "error": "Crash", "message": " | ".join(tail)[:400]}}


def check_client(
    path: Path, facts: EngineFacts | None, *, class_name: str = "", env: dict[str, str] | None = None
) -> list[ClientCheck]:
    """Run the client through a recording proxy; ``facts`` None means the engine is not READY."""
    if facts is None:
        return [
            ClientCheck("engine READY", False, "no engine is READY", "start the engine (Engine page, or start --wait)")
        ]
    with RecordingProxy(facts.base_url) as proxy:
        result = run_client(path, class_name, proxy.url, env=env)
        exchanges = list(proxy.exchanges)
    return analyse(result, exchanges, facts)


def analyse(result: dict[str, Any], exchanges: list[Exchange], facts: EngineFacts) -> list[ClientCheck]:
    """Pure: the checks from what the child reported and what the proxy saw."""
    checks = [ClientCheck("engine READY", True, f"serving {', '.join(facts.served) or '?'}")]
    load = result.get("load") or {}
    if not load.get("ok"):
        checks.append(
            ClientCheck(
                "client loads",
                False,
                f"{load.get('error')}: {load.get('message')}",
                "the module must import, and its class must be buildable with the engine's base URL",
            )
        )
        return checks
    chats = [e for e in exchanges if e.path.rstrip("/").endswith("/chat/completions")]
    checks.append(_path_check(chats, exchanges))
    checks.append(_key_check(exchanges, facts))
    checks += [_model_check(chats, facts), _max_tokens_check(chats, facts)]
    checks.append(_generate_check(result.get("generate") or {}, chats, facts))
    checks.append(_stream_check(result.get("stream") or {}, chats))
    return checks


def _path_check(chats: list[Exchange], all_: list[Exchange]) -> ClientCheck:
    wrong = [e for e in (chats or all_) if e.status == 404]
    if not all_:
        return ClientCheck("endpoint", False, "the client sent no request", "call the engine's /v1/chat/completions")
    if wrong:
        path = wrong[0].path
        fix = (
            "the base URL already ends in /v1 and the client adds another: give it the URL without /v1"
            if "/v1/v1/" in path
            else "the engine serves /v1/chat/completions: give the client the base URL with /v1, or add /v1 in it"
        )
        return ClientCheck("endpoint", False, f"HTTP 404 for {path}", fix)
    return ClientCheck("endpoint", True, ", ".join(sorted({e.path for e in chats})) or "no chat request")


def _key_check(exchanges: list[Exchange], facts: EngineFacts) -> ClientCheck:
    denied = [e for e in exchanges if e.status == 401]
    if denied:
        sent = "a wrong key" if denied[0].authorized else "no Authorization header"
        return ClientCheck(
            "API key",
            False,
            f"HTTP 401: the request carried {sent}",
            "send 'Authorization: Bearer <key>' (Endpoint page → Show API key; the generated provider reads "
            "$ZOE_LLM_API_KEY)",
        )
    return ClientCheck("API key", True, "accepted" if facts.api_key else "the engine has no key")


def _model_check(chats: list[Exchange], facts: EngineFacts) -> ClientCheck:
    asked = [(e.body or {}).get("model") for e in chats]
    missing = [m for m in asked if not m]
    wrong = [m for m in asked if m and facts.served and m not in facts.served]
    served = facts.served[0] if facts.served else "?"
    if missing:
        return ClientCheck(
            "model id",
            False,
            f"{len(missing)} request(s) named no model: this engine answered anyway, one serving several "
            "models (router mode) cannot",
            f'send "model": "{served}"',
        )
    if wrong:
        return ClientCheck(
            "model id", False, f"asked for {wrong[0]!r}, which the engine does not serve", f"use {served!r}"
        )
    return ClientCheck("model id", True, f"{asked[0]!r}" if asked else "no chat request")


def _max_tokens_check(chats: list[Exchange], facts: EngineFacts) -> ClientCheck:
    unset = [e for e in chats if not (e.body or {}).get("max_tokens") and not (e.body or {}).get("n_predict")]
    if not unset:
        return ClientCheck("max_tokens", True, "set on every request")
    speed = f"{facts.tokens_per_s:.0f} tok/s" if facts.tokens_per_s else "its speed"
    if facts.cap:
        took = _secs(facts.cap, facts.tokens_per_s)
        what = f"the engine then stops at its cap of {facts.cap} tokens ({took} at {speed})"
    else:
        what = "the engine then generates until the context is full"
    return ClientCheck("max_tokens", False, f"{len(unset)} request(s) set no max_tokens: {what}", "set max_tokens")


def _secs(tokens: int, tps: float) -> str:
    return f"{tokens / tps:.0f} s" if tps else "?"


def _generate_check(gen: dict[str, Any], chats: list[Exchange], facts: EngineFacts) -> ClientCheck:
    if gen.get("ok") and gen.get("chars"):
        return ClientCheck("reply (no streaming)", True, f"{gen['chars']} characters in {gen.get('s')} s")
    if gen.get("ok"):
        return ClientCheck("reply (no streaming)", False, "an empty reply", "read choices[0].message.content")
    error = str(gen.get("error", ""))
    if "Timeout" in error:
        plain = [e for e in chats if not (e.body or {}).get("stream")]
        asked = int(((plain[0].body or {}).get("max_tokens") if plain else 0) or facts.cap or 0)
        need = asked / facts.tokens_per_s if facts.tokens_per_s and asked else 0.0
        return ClientCheck(
            "reply (no streaming)",
            False,
            f"the client timed out after {gen.get('s')} s; at the measured {facts.tokens_per_s:.0f} tok/s, "
            f"{asked or 'its'} tokens take {need:.0f} s",
            f"set a read timeout of at least {max(30.0, 2 * need):.0f} s (or lower max_tokens)",
        )
    return ClientCheck("reply (no streaming)", False, f"{error}: {gen.get('message', '')}"[:300], "see the error")


def _stream_check(stream: dict[str, Any], chats: list[Exchange]) -> ClientCheck:
    sent = sum(e.delta_text_chars for e in chats if e.streamed)
    if stream.get("ok") and stream.get("chars"):
        return ClientCheck("reply (streaming)", True, f"{stream['chunks']} chunks, {stream['chars']} characters")
    if stream.get("ok") and stream.get("chunks") and sent:
        return ClientCheck(
            "reply (streaming)",
            False,
            f"the stream yielded {stream['chunks']} chunks, all empty, while the engine sent {sent} characters "
            "in choices[0].delta.content",
            "read choices[0].delta.content of each 'data:' line, skip ':' keep-alive lines, stop at 'data: [DONE]'",
        )
    if stream.get("ok"):
        return ClientCheck(
            "reply (streaming)", False, "the stream yielded nothing", 'check the request sets "stream": true'
        )
    return ClientCheck(
        "reply (streaming)", False, f"{stream.get('error')}: {stream.get('message', '')}"[:300], "see the error"
    )
