"""The sweep's arithmetic: combinations, the Pareto frontier, the recommendation within a tolerance,
the state that a restarted panel resumes from, and the chart."""

from __future__ import annotations

from pathlib import Path

import pytest

from zoe_panel.errors import ConfigError
from zoe_panel.sweep import SweepConfig, SweepState, SweepStore, configs, mark_pareto, recommend
from zoe_panel.ui.sweep_view import pareto_figure


def row(key: str, tps: float, peak_mib: float, passed: float = 1.0) -> dict[str, object]:
    return {"config": key, "gen_tokens_per_s": tps, "peak_bytes": int(peak_mib * 2**20), "pass_rate": passed}


def test_combinations_are_every_product_and_bounded() -> None:
    cfgs = configs(ctx=[1024, 2048], cache_type=["f16", "q8_0"], ubatch=[512], threads=[0], parallel=[1], draft=[""])
    assert [c.key for c in cfgs] == [
        "ctx=1024 cache=f16 ub=512 t=0 np=1",
        "ctx=1024 cache=q8_0 ub=512 t=0 np=1",
        "ctx=2048 cache=f16 ub=512 t=0 np=1",
        "ctx=2048 cache=q8_0 ub=512 t=0 np=1",
    ]
    with pytest.raises(ConfigError, match="at most 64"):
        configs(
            ctx=list(range(256, 256 * 66, 256)), cache_type=["f16"], ubatch=[512], threads=[0], parallel=[1], draft=[""]
        )
    with pytest.raises(ConfigError, match="at least one"):
        configs(ctx=[], cache_type=["f16"], ubatch=[512], threads=[0], parallel=[1], draft=[""])


def test_frontier_and_recommendation() -> None:
    rows = mark_pareto([row("a", 60, 500), row("b", 58, 300), row("c", 40, 350), row("d", 30, 250), row("e", 0, 0)])
    front = {r["config"] for r in rows if r["pareto"]}
    assert front == {"a", "b", "d"}  # c is slower and bigger than b; e never measured
    # within 5 % of the fastest (60): a and b; b uses less memory
    assert recommend(rows, 5.0)["config"] == "b"
    assert recommend(rows, 1.0)["config"] == "a"
    # a config that fails its checks is not recommended over one that passes
    rows = mark_pareto([row("fast-wrong", 70, 200, passed=0.5), row("slow-right", 50, 300)])
    assert recommend(rows, 5.0)["config"] == "slow-right"
    assert recommend([], 5.0) is None


def test_state_round_trip_and_what_is_left(tmp_path: Path) -> None:
    store = SweepStore(tmp_path)
    cfgs = [SweepConfig(1024, "f16", 512, 0, 1), SweepConfig(2048, "f16", 512, 0, 1, "ngram-simple")]
    s = SweepState("20261201-120000-abcd", "m.gguf", cfgs)
    s.results[cfgs[0].key] = row(cfgs[0].key, 50, 200) | {"outcome": "ok"}
    store.save(s)
    back = store.load(s.id)
    assert back.configs == cfgs and [c.key for c in back.remaining] == [cfgs[1].key]
    assert store.unfinished()[0].id == s.id
    with pytest.raises(ConfigError):
        store.load("../../etc/passwd")


def test_pareto_chart_marks_the_frontier_and_the_pick() -> None:
    rows = mark_pareto([row("a", 60, 500), row("b", 58, 300), row("c", 40, 350)])
    fig = pareto_figure(rows, recommend(rows, 5.0))
    names = [t.name for t in fig.data]
    assert names == ["dominated", "Pareto frontier", "recommended"]
    assert list(fig.data[1].text) == ["b", "a"]  # frontier drawn by memory
    assert list(fig.data[2].text) == ["b"]
