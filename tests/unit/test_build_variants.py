"""Which variants a build tries, for which target, and what each passes to CMake (pure parts)."""

import ast
import sys
from pathlib import Path

import pytest

from zoe_panel.build.records import BuildRecord, BuildRecords
from zoe_panel.build.smoke import SmokeResult, cpu_backend_of
from zoe_panel.build.variants import (
    NO_AMX_CFLAGS,
    choose_variants,
    configure_env,
    cpu_flags,
    detect_target,
    machine_fingerprint,
)
from zoe_panel.diagnosis import diagnose
from zoe_panel.engine.base import EngineSpec, EngineState, EngineStatus

ROOT = Path(__file__).resolve().parents[2]
AMX_CPU = frozenset(["fpu", "sse4_2", "avx2", "avx512f", "avx512_vnni", "amx_tile", "amx_int8", "amx_bf16"])
PLAIN_CPU = frozenset(["fpu", "sse4_2", "avx2", "fma", "f16c"])


def test_a_cpu_listing_amx_tries_native_without_amx_then_portable() -> None:
    names = [v.name for v in choose_variants("auto", "x86_64", AMX_CPU)]
    assert names == ["native-noamx", "portable"]
    first = choose_variants("auto", "x86_64", AMX_CPU)[0]
    assert first.cflags == NO_AMX_CFLAGS and "-DGGML_NATIVE=ON" in first.cmake_args


def test_other_cpus_try_native_then_portable() -> None:
    assert [v.name for v in choose_variants("auto", "x86_64", PLAIN_CPU)] == ["native", "portable"]
    assert [v.name for v in choose_variants("best", "aarch64", frozenset({"asimd"}))] == ["native", "portable"]


def test_portable_is_runtime_dispatch_as_upstream_releases() -> None:
    (portable,) = choose_variants("portable", "x86_64", AMX_CPU)
    args = set(portable.cmake_args)
    assert {"-DGGML_NATIVE=OFF", "-DGGML_BACKEND_DL=ON", "-DGGML_CPU_ALL_VARIANTS=ON", "-DBUILD_SHARED_LIBS=ON"} <= args
    assert portable.shared and "-DCMAKE_INSTALL_RPATH=$ORIGIN" in args


def test_a_forced_unknown_variant_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="ZOE_BUILD_VARIANT='fast'"):
        choose_variants("fast", "x86_64", AMX_CPU)
    with pytest.raises(ValueError, match="x86"):
        choose_variants("native-noamx", "aarch64", frozenset())


def test_configure_env_appends_the_variant_flags_to_the_users() -> None:
    (noamx,) = choose_variants("native-noamx", "x86_64", AMX_CPU)
    env = configure_env(noamx, {"CFLAGS": "-O2", "PATH": "/bin"})
    assert env["CFLAGS"] == f"-O2 {NO_AMX_CFLAGS}" and env["CXXFLAGS"] == NO_AMX_CFLAGS


def test_jetson_builds_sm87_without_vmm(tmp_path: Path) -> None:
    tegra = tmp_path / "nv_tegra_release"
    tegra.write_text("# R36 (release), REVISION: 4.0\n")
    t = detect_target({}, tegra_release=tegra)
    assert t.label == "cuda-tegra-sm87"
    assert t.cmake_args() == ("-DGGML_CUDA=ON", "-DCMAKE_CUDA_ARCHITECTURES=87", "-DGGML_CUDA_NO_VMM=ON")
    assert detect_target({"ZOE_FORCE_CPU": "1"}, tegra_release=tegra).label == "cpu"


def test_discrete_gpu_builds_for_the_given_or_detected_architecture(tmp_path: Path) -> None:
    t = detect_target({"ZOE_BUILD_TARGET": "cuda", "ZOE_CUDA_ARCH": "90"}, tegra_release=tmp_path / "none")
    assert t.label == "cuda-sm90" and "-DCMAKE_CUDA_ARCHITECTURES=90" in t.cmake_args()
    assert "-DGGML_CUDA_NO_VMM=ON" not in t.cmake_args()
    # a compile check of the Jetson branch on an x86 GPU machine
    assert detect_target({"ZOE_BUILD_TARGET": "cuda-tegra"}, tegra_release=tmp_path / "none").cuda_arch == "87"
    with pytest.raises(ValueError):
        detect_target({"ZOE_BUILD_TARGET": "rocm"}, tegra_release=tmp_path / "none")


def test_cpu_flags_and_fingerprint_follow_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Xeon\nflags\t\t: fpu avx2 amx_tile\n")
    assert cpu_flags(info) == frozenset({"fpu", "avx2", "amx_tile"})
    mid = tmp_path / "machine-id"
    mid.write_text("abc\n")
    one = machine_fingerprint(info, mid)
    info.write_text("processor\t: 0\nmodel name\t: Xeon\nflags\t\t: fpu avx2\n")
    assert machine_fingerprint(info, mid) != one  # other CPU features: not the same machine


def test_the_cpu_backend_a_dispatching_build_loaded_is_read_from_its_log() -> None:
    log = "load_backend: loaded RPC backend from /x/libggml-rpc.so\nload_backend: loaded CPU backend from /x/libggml-cpu-sapphirerapids.so\n"
    assert cpu_backend_of(log) == "sapphirerapids"
    assert cpu_backend_of("no such line") == ""
    # this build logs only the picked variant's features
    info = "0.01 I cmn  common_param: system_info: n_threads = 2 | CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | "
    assert (
        cpu_backend_of(info + "AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | AMX_INT8 = 1 |")
        == "sapphirerapids"
    )
    assert cpu_backend_of(info + "AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | LLAMAFILE = 1 |") == "zen4"
    assert cpu_backend_of(info.replace("AVX512 = 1 | ", "")) == "haswell"


def test_records_trust_a_build_only_on_the_machine_it_decoded_on(tmp_path: Path) -> None:
    binary = tmp_path / "llama-server"
    binary.write_text("")
    records = BuildRecords(tmp_path)
    records.put(BuildRecord("k1", "llama-server", str(binary), "native-noamx", "cpu", "0.3.36"))
    records.add_smoke("k1", "machine-a", SmokeResult(True, 64, 80.0))
    records.choose("machine-a", "llama-server", "cpu", "k1")
    assert records.chosen("machine-a", "llama-server").key == "k1"  # type: ignore[union-attr]
    assert records.chosen("machine-b", "llama-server") is None
    records.add_smoke("k1", "machine-b", SmokeResult(False, exit_code=132, detail="SIGILL"))
    records.choose("machine-b", "llama-server", "cpu", "k1")
    assert records.chosen("machine-b", "llama-server") is None  # chosen once, but it crashes there
    (tmp_path / "builds.json").write_text("[1, 2]")  # damaged: treated as empty, rebuilt
    assert records.all() == []


def test_exit_132_is_diagnosed_with_the_safe_build_switch() -> None:
    status = EngineStatus(EngineState.FAILED, spec=EngineSpec(model="/m/x.gguf"), exit_code=132)
    d = diagnose(status, [], engine_version="b1 (native, cpu)")
    assert d is not None and d.kind == "sigill"
    assert "CPU instructions this machine cannot run" in d.title and "native, cpu" in d.title
    assert any("ZOE_BUILD_VARIANT=portable make llama-server" in f for f in d.fixes)
    py = EngineStatus(EngineState.FAILED, spec=EngineSpec(model="/m/x.gguf", flavor="llama-cpp-python"), exit_code=132)
    assert "ZOE_BUILD_VARIANT=portable make setup" in diagnose(py, []).fixes[0]  # type: ignore[union-attr]


def test_the_build_code_needs_only_the_standard_library() -> None:
    """It runs before the requirements are installed, and on the GPU machine with bare python3."""
    allowed = {"zoe_panel"} | set(sys.stdlib_module_names)
    for f in [*(ROOT / "zoe_panel/build").glob("*.py"), ROOT / "zoe_panel/jsonfile.py"]:
        tree = ast.parse(f.read_text())
        mods = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        mods |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and n.level == 0}
        bad = {m.split(".")[0] for m in mods} - allowed
        assert not bad, f"{f.name} imports {bad}"


def test_the_pinned_llama_cpp_python_is_the_one_built_from() -> None:
    from zoe_panel.build.server import LCP_VERSION

    assert f"llama-cpp-python[server]=={LCP_VERSION}" in (ROOT / "requirements.txt").read_text()
