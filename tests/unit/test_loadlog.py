"""Engine log lines -> load events, on real logs and on the older wordings."""

from pathlib import Path

import pytest

from zoe_panel.engine.loadlog import MIB, failures, load_summary, parse_line, parse_lines

LOGS = Path(__file__).parent.parent / "data" / "logs"


def events(name: str):  # type: ignore[no-untyped-def]
    return parse_lines((float(i), line) for i, line in enumerate((LOGS / name).read_text().splitlines()))


def by_phase(evs, phase):  # type: ignore[no-untyped-def]
    return [e for e in evs if e.phase == phase]


def test_current_llama_server_log() -> None:
    evs = events("llama-server-0c1e570-smollm2-np4.log")
    (kv,) = by_phase(evs, "kv_cache")
    assert kv.bytes == 45 * MIB and kv.detail["cells"] == 2048 and kv.detail["layers"] == 30
    assert kv.detail["seqs"] == 4 and kv.detail["type_k"] == "f16" and kv.detail["k_bytes"] == 22.5 * MIB
    (model,) = by_phase(evs, "model_buffer")
    assert model.device == "CPU_Mapped" and model.bytes == round(92.10 * MIB)
    assert by_phase(evs, "compute_buffer")[0].bytes == round(15.51 * MIB)
    assert by_phase(evs, "output_buffer")[0].bytes == round(0.75 * MIB)
    assert by_phase(evs, "fit_projection")[0].bytes == 152 * MIB
    assert by_phase(evs, "loaded") and by_phase(evs, "listening")[0].detail["url"].startswith("http://127.0.0.1")
    assert not failures(evs)
    # events come in load order: weights, KV, compute, then listening
    order = [e.phase for e in evs if e.phase in ("model_buffer", "kv_cache", "compute_buffer", "listening")]
    assert order == ["model_buffer", "kv_cache", "compute_buffer", "listening"]


def test_gemma3_log_names_both_caches() -> None:
    caches = by_phase(events("llama-server-0c1e570-gemma3-swa.log"), "kv_cache")
    assert [c.detail["cache"] for c in caches] == ["non-SWA", "SWA"]
    assert caches[0].detail["cells"] == 4096 and caches[1].detail["cells"] == 1024


def test_jsonl_log() -> None:
    evs = events("llama-server-0c1e570-jsonl.log")
    assert by_phase(evs, "kv_cache")[0].detail["cells"] == 1024 and by_phase(evs, "listening")


def test_llama_cpp_python_log() -> None:
    evs = events("llama-cpp-python-0.3.36-smollm2.log")
    assert by_phase(evs, "kv_cache")[0].detail["seqs"] == 1
    assert by_phase(evs, "compute_buffer")[0].bytes == round(99.38 * MIB)
    assert by_phase(evs, "listening")[0].detail["url"] == "http://127.0.0.1:18114"


def test_early_2025_wording_of_the_r36_image() -> None:
    evs = events("old-r36.4.0-wording.log")
    (kv,) = by_phase(evs, "kv_cache")
    assert kv.bytes == 448 * MIB and kv.detail["v_bytes"] == 224 * MIB
    assert [e.device for e in by_phase(evs, "model_buffer")] == ["CUDA0", "CPU_Mapped"]
    assert [e.device for e in by_phase(evs, "compute_buffer")] == ["CUDA0", "CUDA_Host"]
    assert by_phase(evs, "offload")[0].detail == {"offloaded": 29, "layers": 29}
    assert by_phase(evs, "loaded") and by_phase(evs, "listening")
    assert load_summary(evs)["model_buffer"] == round(1918.35 * MIB) + round(308.23 * MIB)


def test_aug_2025_wording() -> None:
    evs = events("aug-2025-wording.log")
    assert by_phase(evs, "kv_cache")[0].detail["cells"] == 4096
    assert by_phase(evs, "listening")[0].detail["url"] == "http://127.0.0.1:8080"


@pytest.mark.parametrize(
    "line, kind",
    [
        (
            "ggml_backend_cuda_buffer_type_alloc_buffer: allocating 4096.00 MiB on device 0: cudaMalloc failed: out of memory",
            "oom",
        ),
        ("llama_init_from_model: failed to initialize the context: failed to allocate buffer for kv cache", "oom"),
        ("NvMapMemAllocInternalTagged: 1075072515 error 12", "nvmap"),
        ("CUDA error: CUDA driver version is insufficient for CUDA runtime version", "cuda_driver"),
        ("ggml_cuda_pool_vmm: cuMemAddressReserve failed: operation not supported", "vmm"),
        (
            "llama_model_load: error loading model: error loading model architecture: unknown model architecture: 'gemma4'",
            "unknown_arch",
        ),
        ("srv  llama_server: exiting due to model loading error", "load"),
        ("terminate called after throwing an instance of 'std::bad_alloc'", "oom"),
    ],
)
def test_failures(line: str, kind: str) -> None:
    ev = parse_line(1.0, line)
    assert ev is not None and ev.is_failure and ev.detail["kind"] == kind


def test_cuda_failure_log_in_order() -> None:
    evs = events("cuda-failures.log")
    assert by_phase(evs, "gpu_info")[0].detail == {"name": "Orin", "cc": "8.7", "vmm": True}
    kinds = [e.detail["kind"] for e in failures(evs)]
    assert kinds[:3] == ["oom", "oom", "oom"] and "nvmap" in kinds and "vmm" in kinds and "unknown_arch" in kinds
    assert by_phase(evs, "offload")[-1].detail["offloaded"] == 0
    assert by_phase(evs, "warning")[0].detail["kind"] == "no_gpu"


def test_oom_line_carries_the_size() -> None:
    ev = parse_line(
        0,
        "ggml_backend_cuda_buffer_type_alloc_buffer: allocating 4096.00 MiB on device 0: cudaMalloc failed: out of memory",
    )
    assert ev is not None and ev.bytes == 4096 * MIB
    ev = parse_line(0, "alloc_tensor_range: failed to allocate CUDA0 buffer of size 4294967296")
    assert ev is not None and ev.bytes == 4294967296


def test_unknown_architecture_is_named() -> None:
    ev = parse_line(0, "llama_model_load: error loading model architecture: unknown model architecture: 'gemma4'")
    assert ev is not None and ev.detail["architecture"] == "gemma4"


def test_lines_that_are_not_events() -> None:
    for line in ("", "srv  update_slots: all slots are idle", "slot print_timing: id  0 | task 1 | eval time = 1 ms"):
        assert parse_line(0, line) is None


def test_placement_says_when_gpu_layers_were_ignored() -> None:
    from zoe_panel.engine.base import EngineSpec
    from zoe_panel.engine.placement import placement_note as placement

    gpu = EngineSpec(model="/m/x.gguf", n_gpu_layers=999)
    cpu_log = events("llama-server-0c1e570-smollm2-np4.log")  # the CPU build this machine runs
    note = placement(gpu, cpu_log)
    assert note is not None and "runs on the CPU" in note and "CPU build" in note
    assert placement(EngineSpec(model="/m/x.gguf", n_gpu_layers=0), cpu_log) is None
    assert placement(gpu, events("aug-2025-wording.log")) is None  # 29/29 on CUDA0: as asked
    lines = ["load_tensors: offloaded 0/29 layers to GPU", "warning: no usable GPU found, --gpu-layers ignored"]
    lines.append("load_tensors:   CPU_Mapped model buffer size =  1918.35 MiB")
    no_gpu = parse_lines((float(i), x) for i, x in enumerate(lines))
    assert "found no usable GPU" in (placement(gpu, no_gpu) or "")
    partial = parse_lines(
        [
            (0.0, "load_tensors: offloaded 20/29 layers to GPU"),
            (1.0, "load_tensors: CUDA0 model buffer size = 9.00 MiB"),
        ]
    )
    assert placement(gpu, partial) == "Only 20/29 layers went to the GPU; the rest run on the CPU."
    assert placement(EngineSpec(model="/m/x.gguf", n_gpu_layers=20), partial) is None
