"""Several models behind one engine (llama-server router mode) with the panel's admission, on the real
router with SmolLM2 and Gemma-3: load both, chat with each, a budget that holds one (the least
recently used one is unloaded), a refusal, and what a client naming an unloaded model gets."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import faultkit
import httpx
import pytest
from conftest import engine_runtime, link_model

from zoe_panel.chat import ChatParams
from zoe_panel.engine.base import EngineState
from zoe_panel.errors import EngineError
from zoe_panel.settings import Settings

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SMOL, GEMMA = "SmolLM2-135M-Instruct.Q4_1", "gemma-3-270m-q4_k_m"


@pytest.fixture
def settings(settings_with_model: Settings, gemma3: Path) -> Settings:
    link_model(gemma3, settings_with_model.models_path)
    return settings_with_model


def wait_loaded(rt, name: str, timeout_s: float = 60) -> float:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if any(m.name == name and m.state == "loaded" for m in rt.engine.models()):
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(f"{name} did not load")


def states(rt) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {m.name: m.state for m in rt.engine.models()}


def test_both_models_load_answer_and_unload(settings: Settings) -> None:
    with engine_runtime(settings) as rt:
        rt.admission.write_presets()
        rt.engine.start(rt.router_spec(), backend="process", client="test")
        rt.engine.wait(60, on_poll=rt.recording())
        assert states(rt) == {SMOL: "unloaded", GEMMA: "unloaded"}
        times = {}
        for name in (SMOL, GEMMA):
            rt.engine.load_model(name, admit=rt.admission)
            times[name] = wait_loaded(rt, name)
        client = rt.chat_client()
        for name in (SMOL, GEMMA):
            text, stats = client.complete(
                [{"role": "user", "content": "Say hi."}], ChatParams(max_tokens=8), model=name
            )
            assert text.strip() and stats.completion_tokens > 0
        t0 = time.monotonic()
        rt.engine.unload_model(SMOL)
        while states(rt)[SMOL] != "unloaded":
            time.sleep(0.05)
        unload_s = time.monotonic() - t0
        # a client naming a model that is not loaded: the router does not load it behind the panel
        st = rt.engine.status()
        r = httpx.post(
            f"{st.base_url}/v1/chat/completions",
            json={"model": SMOL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
            headers={"Authorization": f"Bearer {st.spec.api_key}"},  # type: ignore[union-attr]
            timeout=30,
        )
        assert r.status_code == 400 and "not loaded" in r.text and states(rt)[SMOL] == "unloaded"
        audit = [(a["action"], a["target"]) for a in rt.history.audit_log(20)]
        assert ("load", SMOL) in audit and ("unload", SMOL) in audit
    faultkit.report(
        "router: load SmolLM2 and Gemma-3, chat with each, unload; a client names an unloaded model",
        "both answer; the unloaded model is not autoloaded (HTTP 400)",
        f"load {times[SMOL]:.2f} s / {times[GEMMA]:.2f} s, unload {unload_s:.2f} s; client got {r.status_code} "
        f"'{r.json()['error']['message']}'",
        True,
    )


def test_a_budget_for_one_model_unloads_the_least_recently_used_and_refuses_what_cannot_fit(settings: Settings) -> None:
    with engine_runtime(settings) as rt:
        smol, gemma = rt.predict_model(SMOL), rt.predict_model(GEMMA)
        budget = (max(smol, gemma) + min(smol, gemma) // 2) // 2**20  # one model, not both
        rt.admission.set_run_budget(budget)
        rt.admission.write_presets()
        rt.engine.start(rt.router_spec(), backend="process", client="test")
        rt.engine.wait(60)
        assert rt.engine.load_model(SMOL, admit=rt.admission) == []
        wait_loaded(rt, SMOL)
        evicted = rt.engine.load_model(GEMMA, admit=rt.admission)
        wait_loaded(rt, GEMMA)
        assert evicted == [SMOL] and states(rt) == {SMOL: "unloaded", GEMMA: "loaded"}
        decisions = [d.text() for d in rt.admission.decisions]
        rt.admission.set_run_budget(min(smol, gemma) // 2**20 - 1)  # now neither fits
        with pytest.raises(EngineError, match="alone is predicted to need .* more than the budget"):
            rt.engine.load_model(SMOL, admit=rt.admission)
        assert states(rt)[SMOL] == "unloaded"  # refused: nothing unloaded, nothing loaded
    faultkit.report(
        f"router: a budget of {budget} MiB holds one model (SmolLM2 {smol >> 20} MiB, Gemma-3 {gemma >> 20} MiB)",
        "the least recently used model is unloaded; a model that alone does not fit is refused",
        " | ".join(decisions) + " | then refused below both",
        True,
    )


def test_the_cli_starts_the_router_loads_and_lists_models_with_predictions(settings: Settings) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "zoe_panel", *args], capture_output=True, text=True, cwd=ROOT, timeout=180
        )

    try:
        done = cli("start", "--router", "--models-max", "2", "--wait", "60", "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["flavor"] == "router"
        loaded = json.loads(cli("load", SMOL, "--wait", "60", "--json").stdout)
        assert loaded["state"] == "loaded" and "predicted" in loaded["decision"]
        models = {m["name"]: m for m in json.loads(cli("status", "--json").stdout)["models"]}
        assert models[SMOL]["state"] == "loaded" and models[GEMMA]["state"] == "unloaded"
        assert models[SMOL]["predicted_bytes"] > 0 and models[GEMMA]["predicted_bytes"] > 0
        reply = cli("chat", "Say hi", "--model", SMOL, "--max-tokens", "8", "--json")
        assert reply.returncode == 0 and json.loads(reply.stdout)["text"].strip()
        no_model = cli("chat", "Say hi")
        assert no_model.returncode == 1 and "name one with --model" in no_model.stderr
        assert cli("unload", SMOL).returncode == 0
    finally:
        cli("stop")
    with engine_runtime(settings, engine=False) as rt:
        assert rt.engine.status(max_age_s=0).state == EngineState.STOPPED
