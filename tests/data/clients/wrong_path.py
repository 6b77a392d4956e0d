"""A client that adds /v1 to the base URL it is given, and /v1 again in its request path: the
engine sees /v1/v1/chat/completions."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

import httpx
from _common import LLMProvider, key_headers


class WrongPathProvider(LLMProvider):
    def __init__(self, base_url: str = "http://localhost:8088") -> None:
        self.base_url = base_url.rstrip("/") + "/v1"

    def _url(self) -> str:
        return f"{self.base_url}/v1/chat/completions"

    def _headers(self) -> dict[str, str]:
        return key_headers()

    def _body(self, prompt: str, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": "SmolLM2-135M-Instruct.Q4_1",
            "messages": [{"role": "user", "content": prompt}],
            "stream": stream,
        }
        body["max_tokens"] = 64
        return body

    async def generate(self, prompt: str, model: str = "auto", **kwargs: Any) -> str:
        async with httpx.AsyncClient(timeout=120.0) as c:
            r = await c.post(self._url(), json=self._body(prompt, False), headers=self._headers())
            r.raise_for_status()
            return str(r.json()["choices"][0]["message"]["content"])

    async def generate_stream(self, prompt: str, **kwargs: Any) -> AsyncGenerator[str, None]:
        async with (
            httpx.AsyncClient(timeout=120.0) as c,
            c.stream("POST", self._url(), json=self._body(prompt, True), headers=self._headers()) as r,
        ):
            r.raise_for_status()
            async for line in r.aiter_lines():
                if line.startswith("data: ") and line.strip() != "data: [DONE]":
                    choice = (json.loads(line[6:]).get("choices") or [{}])[0]
                    yield (choice.get("delta") or {}).get("content") or ""
