"""The shape of the seed's vLLM provider: no model, no max_tokens, an extra 'context' field,
30 s / 60 s timeouts, and a stream parser that reads a field OpenAI-style servers never send."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

import httpx
from _common import LLMProvider, key_headers


class VLLMProvider(LLMProvider):
    def __init__(self, base_url: str = "http://localhost:8000") -> None:
        self.base_url = base_url

    async def generate(self, prompt: str, model: str = "auto", **kwargs: Any) -> str:
        body = {"messages": [{"role": "user", "content": prompt}], "context": kwargs.get("context", "")}
        async with httpx.AsyncClient(timeout=30.0) as c:
            r = await c.post(f"{self.base_url}/v1/chat/completions", json=body, headers=key_headers())
            r.raise_for_status()
            return str(r.json()["choices"][0]["message"]["content"])

    async def generate_stream(self, prompt: str, **kwargs: Any) -> AsyncGenerator[str, None]:
        body = {"messages": [{"role": "user", "content": prompt}], "stream": True, "context": ""}
        async with (
            httpx.AsyncClient(timeout=60.0) as c,
            c.stream("POST", f"{self.base_url}/v1/chat/completions", json=body, headers=key_headers()) as r,
        ):
            async for line in r.aiter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    yield json.loads(line[6:])["choices"][0].get("text", "")
