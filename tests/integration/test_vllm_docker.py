"""vLLM on the Docker backend, for real: the panel's vLLM in an image made here (tests/vllm_image.py:
the CPU build standing in for a Jetson's vLLM image, run the same way), serving a Hugging Face
folder of the library mounted read-only under /models. Started from the panel with its key and KV
space in the container's environment, READY, the KV tokens it reports as predicted, a reply, and
stopped with its container gone. The image is about 4.5 GB and takes a minute or two to import: this
runs where ZOE_VLLM_DOCKER=1 (make test-vllm-docker), not in every test run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import CACHE, free_port, link_model, require, wait_for

from zoe_panel.chat import ChatParams
from zoe_panel.engine import vllm_support
from zoe_panel.engine.base import EngineState
from zoe_panel.runtime import Runtime
from zoe_panel.settings import load_settings

pytestmark = [
    pytest.mark.integration,
    pytest.mark.docker,
    pytest.mark.slow,
    # opt-in (a plain skip, even under make test): a 4.5 GB image and vLLM's start on top of CI's share
    pytest.mark.skipif(
        os.environ.get("ZOE_VLLM_DOCKER") != "1",
        reason="vLLM in Docker runs with ZOE_VLLM_DOCKER=1 (make test-vllm-docker)",
    ),
]


@pytest.fixture(scope="module")
def image() -> tuple[str, str]:
    host = os.environ.get("ZOE_TEST_DOCKER_HOST", "")
    require(bool(host), "ZOE_TEST_DOCKER_HOST is not set: scripts/test_env.sh starts a private dockerd")
    require(vllm_support.status(CACHE).ready, "vLLM is not installed under the test cache")
    from vllm_image import build

    return host, build(host, vllm_support.venv_dir(CACHE))


@pytest.mark.timeout(900)
def test_vllm_in_a_container_from_the_panel(image: tuple[str, str], tmp_path: Path, smollm2: Path) -> None:
    import docker

    host, tag = image
    home = tmp_path / "zoe"
    gguf = link_model(smollm2, home / "models", "SmolLM2.gguf")
    made = vllm_support.prepare(CACHE, home / "state", gguf)
    folder = made.rename(home / "models" / "SmolLM2-135M-Instruct.hf")  # as a downloaded repo sits
    gguf.unlink()
    env = {
        "ZOE_HOME": str(home),
        "ZOE_CACHE": str(CACHE),
        "ZOE_ENGINE_PORT": str(free_port()),
        "ZOE_DOCKER_VLLM_IMAGE": tag,
        "ZOE_DOCKER_GPU": "none",
        "ZOE_DEFAULT_MAX_TOKENS": "64",
        "DOCKER_HOST": host,
    }
    os.environ["DOCKER_HOST"] = host
    client = docker.DockerClient(base_url=host, timeout=60)
    rt = Runtime(load_settings({**os.environ, **env}), sampler=False)
    try:
        # eager fp32: no torch compile in the container either
        spec = rt.default_spec(folder.name, ctx=2048, extra_args=("--enforce-eager", "--dtype", "float32"))
        assert spec.flavor == "vllm"
        rt.engine.start(spec, backend="docker", client="test")
        st = wait_for(lambda: (s := rt.engine.status(max_age_s=0)).state in (EngineState.READY, EngineState.FAILED)
                      and s, timeout_s=600, interval_s=1.0)  # fmt: skip
        assert st.state == EngineState.READY, (st.reason, rt.engine.logs(80))
        (c,) = client.containers.list(filters={"label": "zoe-panel.engine=1"})
        assert c.image.tags == [tag]
        cmd = c.attrs["Config"]["Cmd"]
        assert cmd[:3] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
        assert cmd[cmd.index("--model") + 1] == "/models/SmolLM2-135M-Instruct.hf" and spec.api_key not in cmd
        cenv = dict(e.split("=", 1) for e in c.attrs["Config"]["Env"])
        assert cenv["VLLM_API_KEY"] == spec.api_key and cenv["VLLM_CPU_KVCACHE_SPACE"] == "1"
        assert cenv["HF_HUB_OFFLINE"] == "1"
        assert c.attrs["HostConfig"]["Binds"][0].endswith(":/models:ro")
        reported = [e.detail.get("tokens") for e in rt.engine.load_events() if e.phase == "kv_tokens"]
        assert reported and reported[-1] == rt.memory.estimate(spec).kv[0].cells > 0, reported
        text, stats = rt.chat_client().complete(
            [{"role": "user", "content": "Name a color."}], ChatParams(max_tokens=16)
        )
        assert text.strip() and stats.completion_tokens > 0
        rt.engine.stop(client="test")
        assert not client.containers.list(all=True, filters={"label": "zoe-panel.engine=1", "status": "running"})
    finally:
        rt.close()
        for cont in client.containers.list(all=True, filters={"label": "zoe-panel.engine=1"}):
            cont.remove(force=True)
