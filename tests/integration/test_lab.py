"""The operator's lab on the real engine: a 2×2 sweep of SmolLM2 from the CLI (History rows, the
frontier, a recommendation applied as the preset), a sweep cancelled and resumed where it stopped,
and speculative decoding with an n-gram mode and with a draft model (acceptance read from the
engine's timings; a draft of another vocabulary refused)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import engine_runtime, link_model

from zoe_panel.chat import ChatParams
from zoe_panel.engine.base import EngineState
from zoe_panel.errors import ConfigError
from zoe_panel.models.demo import GEMMA3_270M, SMOLLM2
from zoe_panel.settings import Settings, load_settings
from zoe_panel.sweep import configs, new_sweep, run_sweep

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
REPEAT = "Copy this list exactly, twice: alpha, beta, gamma, delta, epsilon, zeta, eta, theta, iota, kappa."


def test_a_2x2_sweep_from_the_cli(settings_with_model: Settings, zoe_home: Path) -> None:
    env = {**os.environ, "ZOE_HOME": str(zoe_home)}
    done = subprocess.run(
        [sys.executable, "-m", "zoe_panel", "sweep", SMOLLM2.filename, "--ctx", "1024", "2048",
         "--cache-type", "f16", "q8_0", "--json"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads(done.stdout)
    rows = data["rows"]
    assert len(rows) == 4 and all(r["outcome"] == "ok" for r in rows), rows
    assert {(r["ctx"], r["cache_type"]) for r in rows} == {(1024, "f16"), (1024, "q8_0"), (2048, "f16"), (2048, "q8_0")}
    for r in rows:
        assert r["gen_tokens_per_s"] > 0 and r["peak_bytes"] > 0 and r["pass_rate"] is not None
        assert isinstance(r["pareto"], bool)
    assert any(r["pareto"] for r in rows)
    rec = data["recommended"]
    assert rec is not None and rec["pareto"] in (True, False)
    # every configuration is an engine run in History, with its replies
    rt_settings = load_settings({**os.environ, "ZOE_HOME": str(zoe_home)})
    with engine_runtime(rt_settings, engine=False) as rt:
        for r in rows:
            assert rt.history.run(r["run_id"]) is not None
            assert len(rt.history.chat_stats(run_id=r["run_id"])) == 3
    applied = subprocess.run(
        [sys.executable, "-m", "zoe_panel", "sweep", "--apply", data["id"], "--json"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    with engine_runtime(rt_settings, engine=False) as rt:
        p = rt.presets.get(SMOLLM2.filename)
        assert p is not None and (p.ctx, p.cache_type_k) == (rec["ctx"], rec["cache_type"])


def test_a_cancelled_sweep_resumes_where_it_stopped(settings_with_model: Settings) -> None:
    with engine_runtime(settings_with_model) as rt:
        cfgs = configs(ctx=[1024, 1536], cache_type=["f16"], ubatch=[512], threads=[0], parallel=[1], draft=[""])
        s = new_sweep(rt, SMOLLM2.filename, cfgs)
        cancel = threading.Event()

        def progress(f: float, detail: str) -> None:
            if f > 0:  # the first configuration is finished: stop before the second
                cancel.set()

        s = run_sweep(rt, s, progress=progress, cancel=cancel)
        assert s.status == "cancelled" and len(s.results) == 1, s.results
        first = dict(next(iter(s.results.values())))
        assert rt.engine.status(max_age_s=0).state == EngineState.STOPPED
    # a new process (the panel restarted): the sweep is listed as unfinished and resumes
    with engine_runtime(load_settings()) as rt:
        (left,) = rt.sweeps.unfinished() or [rt.sweeps.load(s.id)]
        assert [c.key for c in left.remaining] == [cfgs[1].key]
        done = run_sweep(rt, left)
        assert done.status == "done" and len(done.results) == 2
        assert done.results[cfgs[0].key]["run_id"] == first["run_id"]  # not run again


def test_speculative_ngram_and_draft(
    settings_with_model: Settings, zoe_home: Path, smollm2: Path, gemma3: Path
) -> None:
    link_model(smollm2, zoe_home / "models", "SmolLM2-draft.gguf")  # a model that shares the vocabulary
    link_model(gemma3, zoe_home / "models")
    with engine_runtime(load_settings()) as rt:
        caps = rt.engine_capabilities()
        assert caps is not None and "ngram-mod" in caps.spec_types
        with pytest.raises(ConfigError, match="cannot draft"):
            rt.draft_check(SMOLLM2.filename, GEMMA3_270M.filename)
        results = {}
        for label, extra in (
            ("off", {}),
            ("ngram", {"spec_type": "ngram-mod"}),
            ("draft", {"spec_type": "draft-simple", "draft_model": str(zoe_home / "models/SmolLM2-draft.gguf")}),
        ):
            spec = rt.default_spec(SMOLLM2.filename, ctx=2048, parallel=1, **extra)
            est = rt.memory.estimate(spec)
            if label == "draft":
                assert est.draft_bytes > smollm2.stat().st_size * 0.9  # its weights, and its KV on top
                assert any(part == "draft model" for _, part, _, _ in est.parts())
            rt.engine.start(spec)
            assert rt.engine.wait(90).state == EngineState.READY
            _, stats = rt.chat_client().complete(
                [{"role": "user", "content": REPEAT}], ChatParams(max_tokens=96, temperature=0.0, seed=1)
            )
            results[label] = stats
            rt.engine.stop()
        assert results["off"].draft_n is None
        assert results["ngram"].draft_n is not None and results["ngram"].draft_n > 0
        # a model drafting for itself agrees with itself on (nearly) every token
        d = results["draft"]
        assert d.draft_n and d.acceptance is not None and d.acceptance > 0.8, d
