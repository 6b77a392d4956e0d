"""Fault suite, Docker: the daemon stops under a running engine and comes back (its own dockerd,
started with --live-restore by the test, so the other tests' daemon is untouched)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CACHE, require, wait_for
from faultkit import report

from zoe_panel.chat import ChatParams
from zoe_panel.engine.base import EngineState
from zoe_panel.runtime import Runtime

pytestmark = [pytest.mark.faults, pytest.mark.docker, pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]
MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf"
IMAGE = "zoe-panel/llama-server:local"


def start_dockerd(d: Path) -> subprocess.Popen[bytes]:
    sock = d / "docker.sock"
    log = (d / "dockerd.log").open("ab")
    proc = subprocess.Popen(
        [
            "dockerd",
            "--data-root",
            str(d / "data"),
            "--exec-root",
            str(d / "exec"),
            "--host",
            f"unix://{sock}",
            "--pidfile",
            str(d / "docker.pid"),
            "--iptables=false",
            "--bridge=none",
            "--live-restore",
            "--add-runtime",
            "nvidia=runc",
            "--containerd-namespace",
            "zoefault",
            "--containerd-plugins-namespace",
            "zoefaultp",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    import docker

    wait_for(lambda: _ping(docker, sock), 60, 0.2)
    return proc


def _ping(docker, sock: Path) -> bool:  # type: ignore[no-untyped-def]
    try:
        return bool(docker.DockerClient(base_url=f"unix://{sock}", timeout=2).ping())
    except Exception:
        return False


@pytest.fixture
def own_daemon(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, list[subprocess.Popen[bytes]]]]:
    require(os.geteuid() == 0 and shutil.which("dockerd") is not None, "needs root and dockerd")
    from zoe_panel.build.records import BuildRecords
    from zoe_panel.engine.binary import fingerprint

    chosen = BuildRecords(CACHE).chosen(fingerprint(), "llama-server", "cpu")
    require(chosen is not None, "no checked native llama-server build to make the engine image from")
    binaries = [chosen.path]  # type: ignore[union-attr]
    d = Path("/tmp") / f"zoe-fault-docker-{os.getpid()}"  # short: unix socket paths are limited
    d.mkdir(exist_ok=True)
    proc = start_dockerd(d)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{d / 'docker.sock'}")
    subprocess.run(
        [sys.executable, str(ROOT / "scripts/build_engine_image.py"), str(binaries[-1]), IMAGE],
        check=True,
        capture_output=True,
        env={**os.environ},
    )
    procs = [proc]
    yield d, procs
    import docker

    try:
        c = docker.DockerClient(base_url=f"unix://{d / 'docker.sock'}", timeout=10)
        for cont in c.containers.list(all=True):
            cont.remove(force=True)
    except Exception:
        pass
    for p in procs:
        p.terminate()
    subprocess.run(["pkill", "-f", str(d)], check=False)
    time.sleep(1)
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines() if str(d) in line]
    for m in sorted(mounts, reverse=True):  # overlay and netns mounts the daemon left behind
        subprocess.run(["umount", "-l", m], check=False)
    shutil.rmtree(d, ignore_errors=True)


def test_docker_daemon_stopped_mid_run_then_back(own_daemon, settings_with_model) -> None:  # type: ignore[no-untyped-def]
    own_daemon, procs = own_daemon
    rt = Runtime(settings_with_model.replace(docker_image=IMAGE, docker_gpu="none"), sampler=False)
    rt.engine.start(rt.default_spec(MODEL, ctx=1024), backend="docker")
    first = rt.engine.wait(90, on_poll=rt.recording())
    procs[0].send_signal(signal.SIGTERM)  # the daemon stops; --live-restore keeps the container running
    procs[0].wait(60)
    rt.engine.docker._client = None
    down = wait_for(lambda: (s := rt.engine.status(max_age_s=0)).state == EngineState.UNHEALTHY and s, 20)
    cli = subprocess.run(
        [sys.executable, "-m", "zoe_panel", "status", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "ZOE_HOME": str(rt.settings.home), "ZOE_DOCKER_IMAGE": IMAGE},
    )
    cli_state = json.loads(cli.stdout)
    served = _chat_directly(first.base_url or "", first.spec.api_key if first.spec else "")
    procs.append(start_dockerd(own_daemon))
    rt.engine.docker._client = None
    rt.engine.docker._down_until = 0.0
    back = wait_for(lambda: (s := rt.engine.status(max_age_s=0)).state == EngineState.READY and s, 60, 0.5)
    ok = (
        "not reachable" in down.reason and cli_state["state"] == "unhealthy" and back.container_id == first.container_id
    )
    report(
        "Docker daemon stopped mid-run, then restarted",
        "clear error while it is down; re-attaches when it is back",
        f"{down.state.value}: '{down.reason[:60]}…'; CLI state {cli_state['state']}; engine still answered chat "
        f"while the daemon was down: {served}; after restart READY, same container {back.container_id == first.container_id}",
        ok,
    )
    assert ok
    panel = Runtime(rt.settings.replace(docker_image=IMAGE, docker_gpu="none"), sampler=True)  # the panel restarts
    panel.start_background()
    try:
        again = panel.engine.status(max_age_s=0)
        import docker

        count = len(docker.from_env().containers.list(all=True, filters={"label": "zoe-panel.engine=1"}))
        ok2 = again.state == EngineState.READY and again.container_id == first.container_id and count == 1
        report(
            "panel restarted while the engine runs in a container",
            "re-attaches by label; no second container",
            f"{again.state.value}, same container {again.container_id == first.container_id}, {count} container",
            ok2,
        )
        assert ok2
    finally:
        panel.close()
    rt.engine.stop()


def _chat_directly(base: str, key: str) -> bool:
    from zoe_panel.chat import ChatClient

    try:
        _, st = ChatClient(base, api_key=key).complete([{"role": "user", "content": "hi"}], ChatParams(max_tokens=4))
        return st.completion_tokens > 0
    except Exception:
        return False
