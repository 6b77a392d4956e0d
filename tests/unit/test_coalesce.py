"""The Chat's bounded redraw rate: the first piece at once, then at most max_hz pieces a second,
nothing lost, and 0 for one piece per token."""

from __future__ import annotations

from zoe_panel.chat_session import coalesce


def test_first_piece_at_once_then_bounded_and_nothing_lost() -> None:
    times = iter([0.0, 0.01, 0.02, 0.05, 0.07, 0.09, 0.11, 0.12, 0.30])
    tokens = [f"t{i} " for i in range(9)]
    out = list(coalesce(iter(tokens), 10.0, clock=lambda: next(times)))
    assert out[0] == "t0 "  # time to first token is not delayed
    assert "".join(out) == "".join(tokens)
    assert len(out) <= 4  # 0.30 s at 10 Hz: at most one piece per 0.1 s, plus the first and the rest
    assert out == ["t0 ", "t1 t2 t3 t4 t5 t6 ", "t7 t8 "]


def test_zero_passes_every_piece() -> None:
    assert list(coalesce(iter(["a", "b", "c"]), 0)) == ["a", "b", "c"]
    assert list(coalesce(iter([]), 15)) == []
