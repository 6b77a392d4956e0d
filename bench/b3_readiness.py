"""Benchmark 3: readiness latency. (a) from the engine's 'listening' log line (stamped by the
supervisor) to the panel seeing READY; (b) Start→READY through the panel vs launching llama-server
by hand with the same arguments and polling /health every 10 ms (the baseline)."""

from __future__ import annotations

import json
import subprocess
import time

import httpx
from common import SMOL, Table, free_port, median, p90, scratch_runtime

from zoe_panel.engine.logfile import parse_stamped


def panel_start(rt) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    spec = rt.default_spec(SMOL, ctx=2048)
    t0 = time.time()
    rt.engine.start(spec)
    rt.engine.wait(60, on_poll=rt.recording())
    seen = time.time()
    listen = next((ln.t for ln in map(parse_stamped, rt.engine.logs(400)) if "listening on" in ln.text), None)
    argv = json.loads(rt.engine.backends["process"].meta_file.read_text())["argv"]  # same args for the baseline
    rt.engine.stop()
    return seen - t0, (seen - listen) if listen else float("nan"), argv


def raw_start(argv: list[str]) -> float:
    port = free_port()
    argv = list(argv)
    argv[argv.index("--port") + 1] = str(port)
    t0 = time.time()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    return time.time() - t0
            except httpx.HTTPError:
                pass
            time.sleep(0.01)
    finally:
        proc.terminate()
        proc.wait(30)


def docker_starts(n: int) -> list[float]:
    """Start→READY with the Docker backend (the test environment's private dockerd and local image)."""
    import os

    host = os.environ.get("ZOE_TEST_DOCKER_HOST") or os.environ.get("DOCKER_HOST")
    if not host:
        return []
    os.environ["DOCKER_HOST"] = host
    rt = scratch_runtime(ZOE_DOCKER_IMAGE="zoe-panel/llama-server:local", ZOE_DOCKER_GPU="none")
    out = []
    try:
        rt.engine.docker.images.inspect("zoe-panel/llama-server:local")
        for _ in range(n):
            t0 = time.time()
            rt.engine.start(rt.default_spec(SMOL, ctx=2048), backend="docker")
            rt.engine.wait(90, on_poll=rt.recording())
            out.append((time.time() - t0) * 1000)
            rt.engine.stop()
    except Exception:
        return []
    finally:
        rt.close()
    return out


def main(smoke: bool = False) -> Table:
    n = 2 if smoke else 8
    rt = scratch_runtime()
    panel, lag, raw = [], [], []
    for _ in range(n):
        total, after_listen, argv = panel_start(rt)
        panel.append(total * 1000)
        lag.append(after_listen * 1000)
        raw.append(raw_start(argv) * 1000)
    rt.close()
    docker = docker_starts(n)
    t = Table(
        f"3. Readiness latency (SmolLM2, ctx 2048, {n} starts each, alternating)",
        ["measure", "median (ms)", "p90 (ms)", "baseline median (ms)", "ratio"],
    )
    t.add("'listening' log line → panel READY", median(lag), p90(lag), None, None)
    t.add("Start → READY through the panel", median(panel), p90(panel), median(raw), median(panel) / median(raw))
    t.add("launch by hand + poll /health every 10 ms (baseline)", median(raw), p90(raw), median(raw), 1.0)
    if docker:
        t.add(
            "Start → READY, Docker backend (21 MB local image)",
            median(docker),
            p90(docker),
            median(panel),
            median(docker) / median(panel),
        )
    t.notes.append(
        "The panel polls readiness every 20 ms while it waits; the rest of the difference is the "
        "supervisor process (a Python start) between the panel and llama-server."
    )
    return t


if __name__ == "__main__":
    print(main().markdown())
