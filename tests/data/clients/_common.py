"""What the fixture clients share: the key from the environment and the interface."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator
from typing import Any


class LLMProvider(ABC):
    @abstractmethod
    async def generate(self, prompt: str, model: str = "auto", **kwargs: Any) -> str: ...

    @abstractmethod
    def generate_stream(self, prompt: str, **kwargs: Any) -> AsyncGenerator[str, None]: ...


def key_headers() -> dict[str, str]:
    key = os.environ.get("ZOE_LLM_API_KEY", "")
    return {"Authorization": f"Bearer {key}"} if key else {}
