"""Hand-off to clients: where the engine is reachable, copy-ready snippets, and a client check that
sends the same requests a client would (OpenAI-style /v1 API, streaming and not)."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

import httpx
import psutil

from zoe_panel.chat import iter_sse


def lan_addresses() -> list[str]:
    """IPv4 addresses of this machine's interfaces, loopback excluded (read locally, nothing sent)."""
    out = []
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            try:
                ip = ipaddress.ip_address(a.address)
            except ValueError:
                continue
            if ip.version == 4 and not ip.is_loopback and not ip.is_link_local:
                out.append(str(ip))
    return sorted(set(out))


def reachable_urls(host: str, port: int) -> tuple[list[str], str]:
    """(base URLs a LAN client can use, a note)."""
    if host in ("0.0.0.0", "::"):
        urls = [f"http://{ip}:{port}/v1" for ip in lan_addresses()] or [f"http://127.0.0.1:{port}/v1"]
        return urls, "the engine listens on all interfaces"
    if ipaddress.ip_address(host).is_loopback:
        return [f"http://{host}:{port}/v1"], (
            "only this machine can reach the engine: set engine_host to 0.0.0.0 "
            "in Settings (and set an API key) to serve the LAN"
        )
    return [f"http://{host}:{port}/v1"], ""


def snippets(base_v1: str, model: str, api_key: str) -> dict[str, str]:
    key_header = ' -H "Authorization: Bearer $ZOE_API_KEY"' if api_key else ""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 128})
    body_stream = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 128, "stream": True}
    )
    auth = '\nheaders = {"Authorization": f"Bearer {os.environ[\'ZOE_API_KEY\']}"}' if api_key else "\nheaders = {}"
    return {
        "curl": f"curl -s {base_v1}/chat/completions -H 'Content-Type: application/json'{key_header} -d '{body}'",
        "curl (stream)": f"curl -N {base_v1}/chat/completions -H 'Content-Type: application/json'{key_header} "
        f"-d '{body_stream}'",
        "python (httpx)": f'''import os, httpx
{auth.strip()}
r = httpx.post("{base_v1}/chat/completions", headers=headers, timeout=120, json={{
    "model": "{model}", "messages": [{{"role": "user", "content": "Hello!"}}], "max_tokens": 128}})
print(r.json()["choices"][0]["message"]["content"])''',
        "python (httpx, stream)": f'''import json, os, httpx
{auth.strip()}
with httpx.stream("POST", "{base_v1}/chat/completions", headers=headers, timeout=120, json={{
        "model": "{model}", "messages": [{{"role": "user", "content": "Hello!"}}], "stream": True}}) as r:
    for line in r.iter_lines():
        if line.startswith("data: ") and line != "data: [DONE]":
            delta = json.loads(line[6:])["choices"][0]["delta"] if json.loads(line[6:])["choices"] else {{}}
            print(delta.get("content") or "", end="", flush=True)''',
    }


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def model_id(base_url: str, api_key: str, timeout_s: float = 5.0) -> str:
    r = httpx.get(base_url + "/v1/models", headers=_auth(api_key), timeout=timeout_s)
    r.raise_for_status()
    return str(r.json()["data"][0]["id"])


def _auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def client_check(base_url: str, api_key: str) -> list[CheckResult]:
    """The requests a client sends, each reported pass/fail with the reason."""
    out: list[CheckResult] = []
    model = ""
    try:
        model = model_id(base_url, api_key)
        out.append(CheckResult("GET /v1/models", True, f"model id {model!r}"))
    except (httpx.HTTPError, KeyError, IndexError, ValueError) as e:
        out.append(CheckResult("GET /v1/models", False, _why(e)))
    body = {"model": model, "messages": [{"role": "user", "content": "Say OK."}], "max_tokens": 8, "temperature": 0}
    try:
        r = httpx.post(base_url + "/v1/chat/completions", json=body, headers=_auth(api_key), timeout=120)
        r.raise_for_status()
        text = r.json()["choices"][0]["message"]["content"]
        out.append(CheckResult("POST /v1/chat/completions", bool(text), f"{len(text or '')} characters"))
    except (httpx.HTTPError, KeyError, IndexError, ValueError) as e:
        out.append(CheckResult("POST /v1/chat/completions", False, _why(e)))
    try:
        deltas, done = 0, False
        with httpx.stream(
            "POST",
            base_url + "/v1/chat/completions",
            json={**body, "stream": True},
            headers=_auth(api_key),
            timeout=120,
        ) as r:
            r.raise_for_status()
            for _, data in iter_sse(r.iter_lines()):
                if data.strip() == "[DONE]":
                    done = True
                    break
                choices = json.loads(data).get("choices") or []
                deltas += sum(1 for c in choices if (c.get("delta") or {}).get("content"))
        ok = deltas > 0 and done
        out.append(
            CheckResult(
                "POST /v1/chat/completions (stream)",
                ok,
                f"{deltas} deltas, {'[DONE] received' if done else 'no [DONE]'}",
            )
        )
    except (httpx.HTTPError, ValueError) as e:
        out.append(CheckResult("POST /v1/chat/completions (stream)", False, _why(e)))
    if api_key:
        r = httpx.post(base_url + "/v1/chat/completions", json=body, headers=_auth("wrong-key"), timeout=30)
        out.append(CheckResult("a wrong API key is refused", r.status_code == 401, f"HTTP {r.status_code}"))
    return out


def _why(e: BaseException) -> str:
    if isinstance(e, httpx.HTTPStatusError):
        try:
            body = e.response.text[:200]
        except httpx.ResponseNotRead:  # a streamed response that failed before its body was read
            body = ""
        return f"HTTP {e.response.status_code}: {body}".strip()
    return f"{type(e).__name__}: {e}"[:300]
