"""vLLM as an engine kind, without vLLM: its command line and environment, the KV it will fit,
its log lines (load phases, KV reported) and the diagnosis of recorded failures: the seed's three
Jetson failures (tests/data/vllm/README.md says where they come from) and the CPU build's two."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zoe_panel.diagnosis import diagnose
from zoe_panel.engine import flavors
from zoe_panel.engine.base import EngineSpec, EngineState, EngineStatus
from zoe_panel.engine.flavors.vllm import hf_dir, vllm_argv
from zoe_panel.engine.loadlog import parse_lines
from zoe_panel.errors import ConfigError
from zoe_panel.models.fit_vllm import vllm_kv_bytes_per_token, vllm_kv_tokens
from zoe_panel.models.shape import model_shape
from zoe_panel.settings import Settings

DATA = Path(__file__).resolve().parents[1] / "data" / "vllm"


def spec(**kw: object) -> EngineSpec:
    return EngineSpec(model="/models/SmolLM2.gguf", flavor="vllm", ctx=2048, parallel=4, **kw)  # type: ignore[arg-type]


def test_argv_and_environment(tmp_path: Path) -> None:
    s = spec(kv_space_mib=2048, api_key="k", alias="smol")
    argv = vllm_argv("/venv/bin/python", s)
    assert argv[:3] == ["/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    assert argv[argv.index("--model") + 1] == str(hf_dir(s.model)) == "/models/SmolLM2.hf"
    assert argv[argv.index("--max-model-len") + 1] == "2048" and argv[argv.index("--max-num-seqs") + 1] == "4"
    assert "k" not in argv  # the key travels in the environment
    # a request without max_tokens stops at the panel's cap, as on llama-server (-n)
    cap = json.loads(argv[argv.index("--override-generation-config") + 1])
    assert cap == {"max_new_tokens": s.n_predict} and s.n_predict > 0
    assert "--override-generation-config" not in vllm_argv("python", spec(n_predict=0))
    # the operator's flags come last (their --dtype wins), from vLLM's own allow-list
    eager = vllm_argv("python", spec(extra_args=("--enforce-eager", "--dtype", "float32")))
    assert eager[-3:] == ["--enforce-eager", "--dtype", "float32"]
    with pytest.raises(ConfigError, match="--trust-remote-code"):
        vllm_argv("python", spec(extra_args=("--trust-remote-code",)))
    with pytest.raises(ConfigError, match="--mlock"):  # a llama-server flag means nothing to vLLM
        flavors.get("vllm").check_extra(["--mlock"])
    assert flavors.get("llama-server").check_extra(["--mlock"]) == ("--mlock",)
    env = flavors.get("vllm").env_for(s, Settings(home=tmp_path))
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "2" and env["VLLM_API_KEY"] == "k"
    for var in ("VLLM_CACHE_ROOT", "XDG_CACHE_HOME"):
        assert env[var].startswith(str(tmp_path))  # nothing written to ~/.cache
    # its sockets go in TMPDIR/<uuid>: a short private folder when the state folder is deep
    assert len(env["TMPDIR"]) + 37 <= 107 and not env["TMPDIR"].startswith("/tmp/torchinductor")


def test_kv_tokens_are_whole_blocks(smollm2: Path) -> None:
    from zoe_panel.models.gguf_meta import read_gguf

    shape = model_shape(read_gguf(smollm2))
    per = vllm_kv_bytes_per_token(shape)
    assert per == 30 * 2 * 3 * 64 * 2  # 30 layers × K and V × 3 KV heads × 64 × bf16
    tokens = vllm_kv_tokens(shape, 1 << 30)
    assert tokens % 128 == 0 and tokens <= (1 << 30) // per < tokens + 128


def test_load_phases_and_reported_kv() -> None:
    lines = [
        "INFO 12-01 [api_server.py] Starting vLLM API server 0 on http://127.0.0.1:8000",
        "INFO 12-01 [default_loader.py] Loading weights took 0.41 seconds",
        "INFO 12-01 [backends.py] torch.compile takes 38.52 s in total",
        "INFO 12-01 [cpu_worker.py] Explicitly set (1.0/18.21) GiB for KV cache on node 0.",
        "INFO 12-01 [kv_cache_utils.py] CPU KV cache size: 46,592 tokens, Maximum concurrency for 2,048 tokens per request: 22.75x",
        "INFO:     Application startup complete.",
    ]
    events = parse_lines([(float(i), x) for i, x in enumerate(lines)])
    phases = [e.phase for e in events]
    assert phases == ["engine_init", "weights_loaded", "compile", "kv_space", "kv_tokens", "loaded"]
    assert events[3].bytes == 1 << 30
    assert events[4].detail == {"tokens": 46592, "per_request": 2048, "concurrency": 22.75}


@pytest.mark.parametrize(
    ("name", "kind", "words"),
    [
        ("jetson-kv-assert.log", "cuda_allocator", "caching allocator"),
        ("jetson-alloc-conf.log", "alloc_conf", "PYTORCH_CUDA_ALLOC_CONF"),
        ("jetson-no-caching-oom.log", "oom", "out of memory"),
        ("cpu-kv-too-big.log", "vllm_kv_space", "could not reserve"),
        ("cpu-no-kvcache-space.log", "vllm_cpu_util", "share of all RAM"),
    ],
)
def test_recorded_failures_are_explained(name: str, kind: str, words: str) -> None:
    text = (DATA / name).read_text()
    events = parse_lines([(0.0, line) for line in text.splitlines()])
    status = EngineStatus(EngineState.FAILED, spec=spec(), exit_code=1, backend="process")
    d = diagnose(status, events)
    assert d is not None and d.kind == kind, (d, [e.detail for e in events if e.is_failure])
    assert words in d.title + d.detail and d.fixes


def test_gpu_wordings_of_the_kv_lines() -> None:
    """vLLM's GPU log lines (V1's strings in vllm/v1/worker/gpu_worker.py and kv_cache_utils.py, V0's
    block count of the older Jetson images): the KV bytes and tokens the prediction is compared with."""
    lines = [
        "INFO 12-01 [gpu_worker.py] Available KV cache memory: 10.52 GiB",
        "INFO 12-01 [kv_cache_utils.py] GPU KV cache size: 344,688 tokens, Maximum concurrency for 4,096 "
        "tokens per request: 84.15x",
        "INFO 12-01 [executor_base.py] # cuda blocks: 2154, # CPU blocks: 512",
    ]
    space, v1, v0 = parse_lines([(float(i), x) for i, x in enumerate(lines)])
    assert space.phase == "kv_space" and space.bytes == int(10.52 * 2**30) and space.device == "GPU"
    assert v1.detail == {"tokens": 344688, "per_request": 4096, "concurrency": 84.15}
    assert v0.phase == "kv_tokens" and v0.detail == {"tokens": 2154 * 16, "blocks": 2154}


def test_gpu_kv_budget_is_what_vllm_leaves_for_it(smollm2: Path) -> None:
    """On a GPU vLLM's KV is utilization × total − weights − activation peak − non-torch − graphs."""
    from dataclasses import replace

    from zoe_panel.models.fit import GIB, MemoryBudget, Verdict
    from zoe_panel.models.fit_vllm import vllm_estimate, vllm_gpu_plan
    from zoe_panel.models.gguf_meta import read_gguf

    info = read_gguf(smollm2)
    shape = model_shape(info)
    gpu = MemoryBudget("discrete", 30 * GIB, gpu_free_bytes=15 * GIB, gpu_total_bytes=16 * GIB)
    plan = vllm_gpu_plan(shape, info.parameter_count * 2, spec(), gpu)
    assert plan.requested_bytes == int(0.9 * 16 * GIB) and plan.weights_bytes == info.parameter_count * 2
    assert plan.kv_bytes == plan.requested_bytes - plan.weights_bytes - plan.activation_bytes - 2 * (GIB // 2)
    est = vllm_estimate(info, spec(), gpu)
    assert est.n_ctx % 16 == 0 and est.n_ctx == vllm_kv_tokens(shape, plan.kv_bytes, 16) > 100_000
    assert plan.start_refusal() is None and est.verdict != Verdict.WONT_FIT
    assert est.to_json()["kv_bytes"] > 0  # History keeps it as any other estimate
    assert "0.90 × 16.0 GiB" in est.notes[0]
    # eager: no CUDA graphs, so half a GiB more for the KV; a lower utilization, less
    eager = vllm_gpu_plan(shape, info.parameter_count * 2, spec(extra_args=("--enforce-eager",)), gpu)
    assert eager.kv_bytes - plan.kv_bytes == GIB // 2
    half = vllm_gpu_plan(shape, info.parameter_count * 2, spec(extra_args=("--gpu-memory-utilization", "0.5")), gpu)
    assert half.requested_bytes == 8 * GIB
    # an Orin NX 16 GB: 15.3 GiB "total" shared with the system, 11 GiB free: the default 0.9 is refused
    orin = MemoryBudget("unified", 11 * GIB, gpu_total_bytes=int(15.3 * GIB))
    refusal = vllm_gpu_plan(shape, info.parameter_count * 2, spec(), orin).start_refusal()
    assert refusal and "--gpu-memory-utilization 0.70" in refusal
    on_orin = vllm_estimate(info, spec(), orin)
    assert any("refuse to start" in n for n in on_orin.notes) and on_orin.verdict == Verdict.WONT_FIT
    # a share too small for one request of the context: refused before Start, as vLLM would at start
    small = MemoryBudget("discrete", 30 * GIB, gpu_free_bytes=15 * GIB, gpu_total_bytes=2 * GIB)
    tiny = vllm_estimate(info, replace(spec(extra_args=("--gpu-memory-utilization", "0.3")), ctx=8192), small)
    assert tiny.verdict == Verdict.WONT_FIT and any("No available memory" in n for n in tiny.notes)


def test_vllm_in_docker_on_a_jetson(tmp_path: Path) -> None:
    """On a (simulated) Orin NX with L4T R36.4: the vLLM image matched to it, vLLM's own command with
    the model folder under /models, the NVIDIA runtime, the key and an offline Hub in the container's
    environment, no CPU KV variable; the exported command names vLLM's key variable."""
    import shlex

    from sim_jetson import build_board_files

    from zoe_panel.engine.argv import Capabilities
    from zoe_panel.engine.docker import DockerEngine
    from zoe_panel.engine.export import exports

    build_board_files(tmp_path / "etc")
    models = tmp_path / "models"
    (models / "SmolLM2.hf").mkdir(parents=True)
    (models / "SmolLM2.hf" / "config.json").write_text("{}")
    (models / "SmolLM2.gguf").write_bytes(b"GGUF")
    settings = Settings(home=tmp_path, tegra_release=tmp_path / "etc" / "nv_tegra_release", docker_gpu="auto")
    eng = DockerEngine(settings)
    image = eng.image_ref("vllm")
    assert image == "ghcr.io/nvidia-ai-iot/vllm:latest-jetson-orin" and eng.image_ref("llama-server") != image
    s = EngineSpec(model=str(models / "SmolLM2.gguf"), flavor="vllm", ctx=2048, parallel=2, api_key="k-1")
    kw = eng.run_kwargs(s, "r1", Capabilities(), image)
    cmd = kw["command"]
    assert cmd[:3] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    assert cmd[cmd.index("--model") + 1] == "/models/SmolLM2.hf" and kw["runtime"] == "nvidia"
    assert kw["environment"]["VLLM_API_KEY"] == "k-1" and kw["environment"]["HF_HUB_OFFLINE"] == "1"
    assert "VLLM_CPU_KVCACHE_SPACE" not in kw["environment"]  # a GPU: the KV is what utilization leaves
    run = shlex.split(exports(settings, s, eng.target(image))["docker_run"])
    assert run[run.index("-e") + 1] == "VLLM_API_KEY" and "k-1" not in run
    # a setting picks another image; an L4T with no known vLLM image says what to set
    assert DockerEngine(Settings(home=tmp_path, docker_vllm_image="my/vllm:1")).image_ref("vllm") == "my/vllm:1"
    build_board_files(tmp_path / "old", l4t="R35 (release), REVISION: 4.1")
    old = DockerEngine(Settings(home=tmp_path, tegra_release=tmp_path / "old" / "nv_tegra_release"))
    with pytest.raises(ConfigError, match="docker_vllm_image"):
        old.image_ref("vllm")


def test_compare_takes_an_engines_own_flags_checked_first(tmp_path: Path) -> None:
    """compare --engine-args vllm='...': refused before any engine starts when vLLM's allow-list
    refuses a flag, or when it names an engine the comparison does not run."""
    from zoe_panel.compare import compare
    from zoe_panel.runtime import Runtime
    from zoe_panel.settings import load_settings

    rt = Runtime(load_settings({"ZOE_HOME": str(tmp_path)}), sampler=False)
    with pytest.raises(ConfigError, match="--trust-remote-code"):
        compare(rt, "m.gguf", ["llama-server", "vllm"], extra={"vllm": ("--trust-remote-code",)})
    with pytest.raises(ConfigError, match="not compared here"):
        compare(rt, "m.gguf", ["llama-server"], extra={"vllm": ("--enforce-eager",)})
    assert rt.history.comparisons(5) == []
