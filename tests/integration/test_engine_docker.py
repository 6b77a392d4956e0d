"""The Docker backend against a real (private) dockerd and a locally built engine image.

scripts/test_env.sh starts the daemon (with "nvidia" registered as an alias of runc, so the
Jetson wiring runs for real here) and a local registry, and builds zoe-panel/llama-server:local.
Jetson paths run over a simulated /etc/nv_tegra_release and a real unix socket as /run/jtop.sock.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port, link_model, require, wait_for
from faultkit import report
from sim_jetson import build_board_files

from zoe_panel.board_check import jetson_check
from zoe_panel.chat import ChatParams
from zoe_panel.engine.base import EngineState
from zoe_panel.engine.images import ImageMissing
from zoe_panel.errors import DockerUnavailable, DownloadError, EngineBusyError, EngineError
from zoe_panel.runtime import Runtime
from zoe_panel.settings import load_settings

pytestmark = [pytest.mark.integration, pytest.mark.docker]
IMAGE = "zoe-panel/llama-server:local"
MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def docker_host() -> str:
    host = os.environ.get("ZOE_TEST_DOCKER_HOST", "")
    require(bool(host), "ZOE_TEST_DOCKER_HOST is not set: scripts/test_env.sh starts a private dockerd")
    import docker

    try:
        docker.DockerClient(base_url=host, timeout=5).images.get(IMAGE)
    except Exception as e:
        require(False, f"no engine image {IMAGE} on {host}: {e}")
    return host


@pytest.fixture
def client(docker_host: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    import docker

    monkeypatch.setenv("DOCKER_HOST", docker_host)
    c = docker.DockerClient(base_url=docker_host, timeout=30)
    yield c
    for cont in c.containers.list(all=True, filters={"label": "zoe-panel.engine=1"}):
        cont.remove(force=True)


def make_rt(home: Path, smollm2: Path, **env: str) -> Runtime:
    link_model(smollm2, home / "models") if not (home / "models" / smollm2.name).exists() else None
    base = {
        "ZOE_HOME": str(home),
        "ZOE_ENGINE_PORT": str(free_port()),
        "ZOE_DOCKER_IMAGE": IMAGE,
        "ZOE_DOCKER_GPU": "none",
        "ZOE_TEGRA_RELEASE": str(home / "etc/nv_tegra_release"),
        "ZOE_JTOP_SOCKET": str(home / "run/jtop.sock"),
        "ZOE_CACHE": os.environ.get("ZOE_CACHE", ""),
    }
    base.update(env)
    return Runtime(load_settings({k: v for k, v in base.items() if v}), sampler=False)


@pytest.fixture
def rt(client, tmp_path: Path, smollm2: Path) -> Iterator[Runtime]:  # type: ignore[no-untyped-def]
    runtime = make_rt(tmp_path / "zoe", smollm2)
    yield runtime
    runtime.close()


def labelled(client) -> list:  # type: ignore[no-untyped-def]
    return client.containers.list(all=True, filters={"label": "zoe-panel.engine=1"})


def test_container_start_chat_stop(rt: Runtime, client) -> None:  # type: ignore[no-untyped-def]
    rt.engine.start(rt.default_spec(MODEL, ctx=2048), backend="docker")
    st = rt.engine.wait(90, on_poll=rt.recording())
    assert st.state == EngineState.READY and st.backend == "docker" and st.container_id
    c = client.containers.get(st.container_id)
    hc = c.attrs["HostConfig"]
    assert hc["NetworkMode"] == "host" and hc["ShmSize"] == 8 * 1024**3
    assert f"{rt.store.root.resolve()}:/models:ro" in hc["Binds"]
    assert c.labels["zoe-panel.model"] == MODEL and c.labels["zoe-panel.spec-hash"] == st.spec.spec_hash()
    assert c.attrs["Config"]["Cmd"][:3] == ["llama-server", "-m", f"/models/{MODEL}"]
    text, stats = rt.chat_client().complete([{"role": "user", "content": "Say hi."}], ChatParams(max_tokens=12))
    assert text and stats.source == "engine"
    assert any("KV buffer size" in line for line in rt.engine.logs(400))  # logs come from the container
    assert rt.engine.engine_pid() and rt.engine.engine_pid() == c.attrs["State"]["Pid"]
    rt.engine.stop()
    assert labelled(client) == [] and rt.engine.status(max_age_s=0).state == EngineState.STOPPED


def test_reattach_and_one_engine_across_backends(rt: Runtime, client, tmp_path: Path, smollm2: Path) -> None:  # type: ignore[no-untyped-def]
    rt.engine.start(rt.default_spec(MODEL, ctx=1024), backend="docker")
    first = rt.engine.wait(90, on_poll=rt.recording())
    again = make_rt(tmp_path / "zoe", smollm2)  # a restarted panel
    st = again.engine.status(max_age_s=0)
    assert st.state == EngineState.READY and st.container_id == first.container_id and st.run_id == first.run_id
    with pytest.raises(EngineBusyError):
        again.engine.start(again.default_spec(MODEL, ctx=1024), backend="process")
    with pytest.raises(EngineBusyError):
        again.engine.start(again.default_spec(MODEL, ctx=1024), backend="docker")
    assert len(labelled(client)) == 1
    data = json.loads(
        subprocess.run(
            [sys.executable, "-m", "zoe_panel", "status", "--json"],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env={**os.environ, "ZOE_HOME": str(tmp_path / "zoe"), "ZOE_DOCKER_IMAGE": IMAGE},
        ).stdout
    )
    assert data["state"] == "ready" and data["backend"] == "docker" and data["container_id"] == first.container_id


def test_container_killed_behind_the_panels_back(rt: Runtime, client) -> None:  # type: ignore[no-untyped-def]
    rt.engine.start(rt.default_spec(MODEL, ctx=1024), backend="docker")
    st = rt.engine.wait(90, on_poll=rt.recording())
    client.containers.get(st.container_id).kill()
    failed = wait_for(lambda: (s := rt.engine.status(max_age_s=0)).state == EngineState.FAILED and s, 20)
    assert failed.exit_code == 137 and "SIGKILL" in failed.reason


def test_exported_commands_run_as_pasted(rt: Runtime, client, docker_host: str) -> None:  # type: ignore[no-untyped-def]
    """ "Copy as command": the docker run line starts a working engine through the docker CLI, the
    compose block carries the same command, the native line names this machine's binary."""
    import httpx
    import yaml

    from zoe_panel.engine.binary import find_llama_server

    spec = rt.default_spec(MODEL, ctx=1024, api_key="k-123")
    forms = rt.engine.exports(spec)
    assert "k-123" not in "".join(forms.values())  # the key stays a variable reference
    native = shlex.split(forms["native"].split(" ", 1)[1])
    assert native[:3] == [find_llama_server(rt.settings), "-m", spec.model]
    run = shlex.split(forms["docker_run"])
    service = yaml.safe_load(forms["compose"])["services"]["llm"]
    assert service["image"] == IMAGE and service["network_mode"] == "host"
    assert run[-len(service["command"]) - 1 :] == [IMAGE, *service["command"]]
    assert service["volumes"][0] == f"{rt.store.root.resolve()}:/models:ro"
    try:
        subprocess.run(
            run,
            check=True,
            capture_output=True,
            env={**os.environ, "DOCKER_HOST": docker_host, "LLAMA_API_KEY": "k-123"},
        )
        base = f"http://127.0.0.1:{spec.port}"
        wait_for(lambda: _status(f"{base}/health") == 200, 60)
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        url = f"{base}/v1/chat/completions"
        assert httpx.post(url, json=body, timeout=30).status_code == 401  # the key came through -e
        r = httpx.post(url, json=body, headers={"Authorization": "Bearer k-123"}, timeout=30)
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] is not None
    finally:
        for c in client.containers.list(all=True, filters={"name": "zoe-engine"}):
            c.remove(force=True)


def _status(url: str) -> int:
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


@pytest.mark.faults
def test_on_failure_restarts_a_crash_but_not_a_failed_load(client, tmp_path: Path, smollm2: Path) -> None:  # type: ignore[no-untyped-def]
    """Docker's own on-failure policy would also retry a failed load; the panel arms it only
    once the engine has loaded, as the supervisor does for the process backend."""
    rt = make_rt(tmp_path / "zoe", smollm2, ZOE_RESTART_POLICY="on-failure", ZOE_RESTART_MAX="2")
    try:
        rt.engine.start(rt.default_spec(MODEL, ctx=4_194_304), backend="docker")
        with pytest.raises(EngineError) as e:
            rt.engine.wait(90, on_poll=rt.recording())
        assert "KV cache" in str(e.value)
        time.sleep(2)  # room for a restart the daemon must not make
        c = labelled(client)[0]
        assert c.attrs["HostConfig"]["RestartPolicy"]["Name"] == "no"
        oom = rt.engine.status(max_age_s=0)
        assert oom.state == EngineState.FAILED and "not restarted" in oom.reason
        assert c.status == "exited" and c.attrs["RestartCount"] == 0

        rt.engine.start(rt.default_spec(MODEL, ctx=1024), backend="docker")
        first = rt.engine.wait(90, on_poll=rt.recording())
        c = client.containers.get(first.container_id)
        assert c.attrs["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
        t0 = time.monotonic()
        os.kill(c.attrs["State"]["Pid"], signal.SIGKILL)  # a crash, not a stop through the daemon
        back = wait_for(
            lambda: (s := rt.engine.status(max_age_s=0)).state == EngineState.READY and s.restarts >= 1 and s,
            60,
        )
        took = time.monotonic() - t0
        assert back.container_id == first.container_id and back.run_id == first.run_id
        report(
            "Docker backend, on-failure: OOM at load (4M-token context), then SIGKILL of the loaded engine",
            "the failed load is not retried; the crash is restarted in the same container",
            f"load: FAILED, RestartCount 0, '{oom.reason[-60:]}'; crash: READY again after {took:.1f} s, "
            f"restarts={back.restarts}, same container {back.container_id == first.container_id}",
            True,
        )
    finally:
        rt.close()


def test_daemon_unreachable_is_a_clear_error_and_the_panel_keeps_working(rt: Runtime, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    rt.engine.docker._client = None
    with pytest.raises(DockerUnavailable, match="not reachable at unix:///nonexistent/docker.sock"):
        rt.engine.start(rt.default_spec(MODEL), backend="docker")
    assert rt.engine.status(max_age_s=0).state == EngineState.STOPPED
    rt.engine.start(rt.default_spec(MODEL, ctx=1024), backend="process")  # the native engine still works
    assert rt.engine.wait(60, on_poll=rt.recording()).backend == "process"
    rt.engine.stop()


def test_missing_image_offers_a_pull(client, tmp_path: Path, smollm2: Path) -> None:  # type: ignore[no-untyped-def]
    rt = make_rt(tmp_path / "zoe", smollm2, ZOE_DOCKER_IMAGE="zoe-panel/llama-server:not-here")
    with pytest.raises(ImageMissing, match="pull it first") as e:
        rt.engine.start(rt.default_spec(MODEL), backend="docker")
    assert e.value.image == "zoe-panel/llama-server:not-here" and labelled(client) == []


def test_pull_with_progress_from_a_local_registry(client, rt: Runtime) -> None:  # type: ignore[no-untyped-def]
    registry = os.environ.get("ZOE_TEST_REGISTRY", "")
    require(bool(registry), "no local registry (ZOE_TEST_REGISTRY)")
    ref = f"{registry}/zoe/llama-server:pulltest"
    # an image with a layer this daemon does not have yet, so the pull really downloads
    c = client.containers.create(IMAGE, command=["llama-server", "--version"])
    data = os.urandom(4 * 1024 * 1024)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("blob.bin")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    c.put_archive("/tmp", buf.getvalue())
    c.commit(f"{registry}/zoe/llama-server", "pulltest")
    c.remove()
    pushed_id = client.images.get(ref).id
    for line in client.images.push(f"{registry}/zoe/llama-server", tag="pulltest", stream=True, decode=True):
        assert "error" not in line, line
    client.images.remove(ref)
    seen: list[float] = []
    got = rt.engine.docker.images.pull(ref, lambda p: seen.append(p.fraction))
    assert got.id == pushed_id
    assert seen[-1] == 1.0 and seen == sorted(seen) and any(0 < f < 1 for f in seen)
    client.images.remove(ref)
    with pytest.raises(DownloadError, match="not found|unknown|manifest"):
        rt.engine.docker.images.pull(f"{registry}/zoe/llama-server:no-such-tag")


def jetson_rt(home: Path, smollm2: Path, **env: str) -> Runtime:
    build_board_files(home / "etc")
    (home / "run").mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(home / "run/jtop.sock"))  # a real socket file, as the jtop service leaves it
    return make_rt(home, smollm2, ZOE_DOCKER_GPU="auto", **env)


def test_jetson_wiring_on_the_container_the_daemon_created(client, tmp_path: Path, smollm2: Path) -> None:  # type: ignore[no-untyped-def]
    rt = jetson_rt(tmp_path / "zoe", smollm2)
    assert rt.engine.docker.gpu_mode() == "runtime"
    assert rt.engine.choose_backend("auto") == "docker"
    rt.engine.start(rt.default_spec(MODEL, ctx=1024))  # auto -> docker on a Jetson with the image here
    st = rt.engine.wait(90, on_poll=rt.recording())
    c = client.containers.get(st.container_id)
    hc = c.attrs["HostConfig"]
    assert hc["Runtime"] == "nvidia"
    assert f"{tmp_path / 'zoe/run/jtop.sock'}:/run/jtop.sock:rw" in hc["Binds"]
    assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in c.attrs["Config"]["Env"]
    rt.engine.stop()


def test_jetson_without_the_runtime_is_a_clear_error(client, tmp_path: Path, smollm2: Path) -> None:  # type: ignore[no-untyped-def]
    rt = jetson_rt(tmp_path / "zoe", smollm2, ZOE_DOCKER_RUNTIME="nvidia-missing")
    with pytest.raises(DockerUnavailable, match="no 'nvidia-missing' runtime.*nvidia-ctk"):
        rt.engine.start(rt.default_spec(MODEL), backend="docker")
    assert labelled(client) == []


def test_jetson_default_image_comes_from_the_l4t_table(client, tmp_path: Path, smollm2: Path) -> None:  # type: ignore[no-untyped-def]
    rt = jetson_rt(tmp_path / "zoe", smollm2, ZOE_DOCKER_IMAGE="")
    assert rt.engine.docker.image_ref() == "dustynv/llama_cpp:0.3.9-r36.4.0-cu128-24.04"
    assert rt.engine.choose_backend("auto") == "process"  # that image is not here: native engine
    with pytest.raises(ImageMissing, match="dustynv/llama_cpp:0.3.9-r36.4.0-cu128-24.04"):
        rt.engine.start(rt.default_spec(MODEL), backend="docker")


@pytest.fixture
def cuda_images(client):  # type: ignore[no-untyped-def]
    made = []
    for v in ("12.6", "12.8"):
        c = client.containers.create(IMAGE, command=["llama-server", "--version"])
        c.commit("zoe-panel/llama-server", f"cuda-{v}", changes=[f"ENV CUDA_VERSION={v}"])
        c.remove()
        made.append(f"zoe-panel/llama-server:cuda-{v}")
    yield made
    for ref in made:
        client.images.remove(ref, force=True)


def test_image_cuda_checked_against_the_l4t_driver(client, cuda_images, tmp_path: Path, smollm2: Path) -> None:  # type: ignore[no-untyped-def]
    too_new = jetson_rt(tmp_path / "a", smollm2, ZOE_DOCKER_IMAGE="zoe-panel/llama-server:cuda-12.8")
    with pytest.raises(DockerUnavailable, match="built for CUDA 12.8 .* supports CUDA 12.6"):
        too_new.engine.start(too_new.default_spec(MODEL), backend="docker")
    matching = jetson_rt(tmp_path / "b", smollm2, ZOE_DOCKER_IMAGE="zoe-panel/llama-server:cuda-12.6")
    matching.engine.start(matching.default_spec(MODEL, ctx=1024), backend="docker")
    assert matching.engine.wait(90, on_poll=matching.recording()).state == EngineState.READY
    matching.engine.stop()


def test_jetson_check_over_the_simulated_board(client, cuda_images, tmp_path: Path, smollm2: Path) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "zoe"
    (home / "var").mkdir(parents=True)
    (home / "var/status").write_text("pmode:0002\n")
    rt = jetson_rt(
        home,
        smollm2,
        ZOE_DOCKER_IMAGE="zoe-panel/llama-server:cuda-12.8",
        ZOE_NVPMODEL_CONF=str(home / "etc/nvpmodel.conf"),
        ZOE_NVPMODEL_STATUS=str(home / "var/status"),
    )
    report = jetson_check(rt.settings)
    assert report.facts["L4T"] == "36.4.3" and report.facts["JetPack"] == "6.1 / 6.2"
    assert report.facts["CUDA (BSP)"] == "12.6" and "nvidia" in report.facts["docker runtimes"]
    assert report.facts["power mode"] == "15W" and "present" in report.facts["jtop service"]
    assert "MISMATCH" in report.facts["image match"]
    assert any("CUDA 12.8" in f and "suggested: dustynv/llama_cpp" in f for f in report.fixes)
    assert any("MAXN" in f for f in report.fixes)
    out = subprocess.run(
        [sys.executable, "-m", "zoe_panel", "jetson-check", "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={
            **os.environ,
            "ZOE_HOME": str(home),
            "ZOE_TEGRA_RELEASE": str(home / "etc/nv_tegra_release"),
            "ZOE_DOCKER_IMAGE": "zoe-panel/llama-server:cuda-12.6",
            "ZOE_NVPMODEL_CONF": str(home / "etc/nvpmodel.conf"),
            "ZOE_NVPMODEL_STATUS": str(home / "var/status"),
            "ZOE_JTOP_SOCKET": str(home / "run/jtop.sock"),
        },
    )
    data = json.loads(out.stdout)
    assert out.returncode == 4 and data["facts"]["image match"].endswith("ok") and not data["ok"]
