"""One browser tab's conversation: turns, the reply in flight, export. No Streamlit in here.

The Chat page keeps a ChatSession in ``st.session_state``. ``stream_text`` is the generator the
page hands to ``st.write_stream``; when the operator presses Stop, Streamlit abandons the run and
the generator is closed, and its ``finally`` keeps the partial reply with the stats so far.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from zoe_panel.chat import ChatClient, ChatDelta, ChatParams, ChatStream
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
    stop_requested: bool = False

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

    def stream_text(
        self,
        client: ChatClient,
        params: ChatParams,
        *,
        on_event: Callable[[ChatStream, ChatDelta], None] | None = None,
        **kwargs: Any,
    ) -> Iterator[str]:
        """Yield content deltas; always leaves the reply (complete, partial or failed) in turns."""
        turn = ChatTurn("assistant", "")
        self.pending = turn
        self.stop_requested = False
        stream = client.stream(self.api_messages(), params, **kwargs)
        self.stream = stream
        finished = False
        try:
            for delta in stream:
                if on_event is not None:
                    on_event(stream, delta)
                if delta.kind == "content":
                    turn.content += delta.text
                    yield delta.text
                elif delta.kind == "reasoning":
                    turn.reasoning += delta.text
            finished = True
        except ChatError as e:
            if self.stop_requested:
                turn.stopped = True  # our own Stop closed the connection: not an engine error
            else:
                turn.error = str(e)
            finished = True
        finally:
            self._finish(turn, stream, stopped=not finished)

    def _finish(self, turn: ChatTurn, stream: ChatStream, *, stopped: bool) -> None:
        if stopped:
            turn.stopped = True  # closed from outside: the operator pressed Stop
            stream.close()
        if turn in self.turns:
            return  # stop() already kept it
        turn.stats = stream.stats.to_json()
        turn.stats.update({"live": stream.live()})
        self.turns.append(turn)
        self.pending = None
        self.stream = None

    def stop(self, wait_s: float = 2.0) -> bool:
        """Stop the reply in flight (Stop pressed in a new run of the page): close the HTTP stream so
        the engine stops generating, and make sure the partial reply is kept. False if none ran."""
        import time

        turn, stream = self.pending, self.stream
        if turn is None or stream is None:
            return False
        self.stop_requested = True
        stream.close()
        deadline = time.monotonic() + wait_s
        while self.pending is turn and time.monotonic() < deadline:
            time.sleep(0.02)
        if self.pending is turn:
            self._finish(turn, stream, stopped=True)
        return True

    def regenerate(self) -> bool:
        """Drop the last reply so the last question can be asked again; False if there is none."""
        while self.turns and self.turns[-1].role == "assistant":
            self.turns.pop()
        return bool(self.turns) and self.turns[-1].role == "user"

    def edit_last(self, text: str) -> None:
        """Replace the last question (and drop what came after it)."""
        text = text.strip()
        if not text:
            raise ChatError("empty message")
        idx = max((i for i, t in enumerate(self.turns) if t.role == "user"), default=None)
        if idx is None:
            raise ChatError("there is no message to edit yet")
        del self.turns[idx:]
        self.turns.append(ChatTurn("user", text))

    def last_user(self) -> str:
        return next((t.content for t in reversed(self.turns) if t.role == "user"), "")

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


def coalesce(chunks: Iterable[str], max_hz: float, clock: Callable[[], float] = time.monotonic) -> Iterator[str]:
    """Hand a stream's text to the page at most ``max_hz`` times a second: the first piece at once
    (time to first token is not delayed), then what arrived since, whenever the interval has passed,
    and the rest at the end. Nothing is lost; ``max_hz`` <= 0 passes every piece (one redraw per
    token, which on 2 cores cost the engine a third of its decode speed)."""
    if max_hz <= 0:
        yield from chunks
        return
    interval = 1.0 / max_hz
    pending = ""
    last = -1e9
    for piece in chunks:
        pending += piece
        now = clock()
        if now - last >= interval and pending:
            yield pending
            pending = ""
            last = now
    if pending:
        yield pending


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
    if stats.get("mean_power_w") is not None:
        tpj = f", {stats['tokens_per_j']:.2f} tok/J" if stats.get("tokens_per_j") is not None else ""
        parts.append(f"{stats['mean_power_w']:.1f} W ({stats.get('power_source', '?')}){tpj}")
    return " · ".join(parts) + f" ({stats.get('source', 'client')} timings)"
