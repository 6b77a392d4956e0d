"""One browser tab's conversation: turns, the reply in flight, export. No Streamlit in here.

The Chat page keeps a ChatSession in ``st.session_state``. ``stream_text`` is the generator the
page hands to ``st.write_stream``; when the operator presses Stop, Streamlit abandons the run and
the generator is closed, and its ``finally`` keeps the partial reply with the stats so far.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from zoe_panel.chat import ChatClient, ChatParams, ChatStream
from zoe_panel.errors import ChatError


@dataclass
class ChatTurn:
    role: str
    content: str
    reasoning: str = ""
    stats: dict[str, Any] | None = None
    error: str | None = None
    stopped: bool = False
    at: float = field(default_factory=time.time)


@dataclass
class ChatSession:
    system: str = "You are a helpful assistant."
    turns: list[ChatTurn] = field(default_factory=list)
    pending: ChatTurn | None = None
    stream: ChatStream | None = field(default=None, repr=False)

    def api_messages(self) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": self.system}] if self.system.strip() else []
        for t in self.turns:
            if t.content:
                msgs.append({"role": t.role, "content": t.content})
        return msgs

    def ask(self, text: str) -> None:
        text = text.strip()
        if not text:
            raise ChatError("empty message")
        self.turns.append(ChatTurn("user", text))

    def last_assistant(self) -> ChatTurn | None:
        return next((t for t in reversed(self.turns) if t.role == "assistant"), None)

    def stream_text(self, client: ChatClient, params: ChatParams, **kwargs: Any) -> Iterator[str]:
        """Yield content deltas; always leaves the reply (complete, partial or failed) in turns."""
        turn = ChatTurn("assistant", "")
        self.pending = turn
        stream = client.stream(self.api_messages(), params, **kwargs)
        self.stream = stream
        finished = False
        try:
            for delta in stream:
                if delta.kind == "content":
                    turn.content += delta.text
                    yield delta.text
                elif delta.kind == "reasoning":
                    turn.reasoning += delta.text
            finished = True
        except ChatError as e:
            turn.error = str(e)
            finished = True
        finally:
            if not finished:
                turn.stopped = True  # closed from outside: the operator pressed Stop
                stream.close()
            turn.stats = stream.stats.to_json()
            turn.stats.update({"live": stream.live()})
            self.turns.append(turn)
            self.pending = None
            self.stream = None

    def clear(self) -> None:
        self.turns.clear()
        self.pending = None

    def to_json(self) -> str:
        return json.dumps({"system": self.system, "turns": [asdict(t) for t in self.turns]}, indent=2)

    def to_markdown(self) -> str:
        out = [f"**system:** {self.system}", ""] if self.system else []
        for t in self.turns:
            out.append(f"**{t.role}:** {t.content}")
            if t.error:
                out.append(f"> error: {t.error}")
            out.append("")
        return "\n".join(out)


def stats_line(stats: dict[str, Any] | None) -> str:
    """'TTFT 112 ms · 163.7 tok/s · 128 tokens · prompt 300 tok/s (engine timings)'."""
    if not stats:
        return ""
    parts = []
    if stats.get("ttft_ms") is not None:
        parts.append(f"TTFT {stats['ttft_ms']:.0f} ms")
    rate = stats.get("gen_tokens_per_s")
    if rate is None and stats.get("live"):
        rate = stats["live"].get("tokens_per_s")
    if rate:
        parts.append(f"{rate:.1f} tok/s")
    parts.append(f"{stats.get('completion_tokens', 0)} tokens")
    if stats.get("prompt_tokens_per_s"):
        parts.append(f"prompt {stats.get('prompt_tokens')} tok at {stats['prompt_tokens_per_s']:.0f} tok/s")
    return " · ".join(parts) + f" ({stats.get('source', 'client')} timings)"
