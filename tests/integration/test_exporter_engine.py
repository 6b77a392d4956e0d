"""The Prometheus exporter scraped while a real engine runs: from the CLI's `exporter` process (the
panel's own exporter is the same code), with memory, engine state, the last chat's tok/s and
llama.cpp's own metrics."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import engine_runtime, free_port, wait_for
from prometheus_client.parser import text_string_to_metric_families

from zoe_panel.models.demo import SMOLLM2
from zoe_panel.settings import Settings

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = httpx.get(url, timeout=10).text
    return {f.name: [(s.labels, s.value) for s in f.samples] for f in text_string_to_metric_families(text)}


def test_scrape_while_an_engine_runs(settings_with_model: Settings, zoe_home: Path) -> None:
    port = free_port()
    env = {**os.environ, "ZOE_HOME": str(zoe_home)}
    with engine_runtime(settings_with_model) as rt:
        rt.engine.start(rt.default_spec(SMOLLM2.filename, ctx=2048))
        assert rt.engine.wait(60).state.value == "READY"
        chat = subprocess.run(
            [sys.executable, "-m", "zoe_panel", "chat", "Count to five.", "--max-tokens", "24"],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert chat.returncode == 0, chat.stderr
        proc = subprocess.Popen(
            [sys.executable, "-m", "zoe_panel", "exporter", "--port", str(port)],
            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}/metrics"
            m = wait_for(lambda: _try(url), 30, 0.2)
            (avail,) = m["zoe_memory_available_bytes"]
            assert avail[1] > 0
            states = {labels["state"]: v for labels, v in m["zoe_engine_state"]}
            assert states["ready"] == 1.0 and states["stopped"] == 0.0
            (tps,) = m["zoe_chat_gen_tokens_per_second"]
            assert tps[1] > 0
            info = m["zoe_engine_info"][0][0]
            assert info["model"] == SMOLLM2.filename
            stages = {labels["stage"]: v for labels, v in m["zoe_engine_predicted_bytes"]}
            assert stages["total"] >= stages["at_ready"] > 0
            # llama.cpp's own counters, renamed
            assert m["zoe_llamacpp_prompt_tokens"][0][1] > 0
            # every series the Grafana dashboard draws exists (or is one this machine cannot have)
            dash = json.loads((ROOT / "deploy/grafana-dashboard.json").read_text())
            exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
            names = {n.removesuffix("_total") for e in exprs for n in re.findall(r"zoe_[a-z_]+", e)}
            hardware = {"zoe_gpu_memory_used_bytes", "zoe_power_watts", "zoe_engine_rss_bytes", "zoe_cpu_percent"}
            assert names - set(m) - hardware == set()
            rt.engine.stop()
            # the exporter's status may be a quarter of a second old: wait for the scrape that shows the stop
            m = wait_for(lambda: (x := _try(url)) and _state(x, "stopped") == 1.0 and x, 10, 0.2)
            assert _state(m, "stopped") == 1.0 and _state(m, "ready") == 0.0
            assert not any(k.startswith("zoe_llamacpp_") for k in m)
        finally:
            proc.terminate()
            proc.wait(10)


def _try(url: str) -> dict[str, list[tuple[dict[str, str], float]]] | None:
    try:
        return scrape(url)
    except httpx.HTTPError:
        return None


def _state(m: dict[str, list[tuple[dict[str, str], float]]], state: str) -> float | None:
    return {labels["state"]: v for labels, v in m.get("zoe_engine_state") or []}.get(state)
