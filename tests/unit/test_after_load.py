"""Memory after load: the estimate's two stages, the flags that bound the second, the alarm, and
how a failed load is recorded. Numbers come from real llama-server logs of this machine."""

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from zoe_panel.engine.argv import Capabilities, llama_server_argv
from zoe_panel.engine.base import EngineSpec, EngineState, EngineStatus
from zoe_panel.engine.loadlog import load_progress, parse_lines, progress_text
from zoe_panel.history import History
from zoe_panel.memalarm import CLEAR_MARGIN, AlarmWatch, check, read_alarm, smaller_cache
from zoe_panel.memory import memory_kind
from zoe_panel.models.fit import GIB, MIB, MemoryBudget, Verdict, estimate, repack_types
from zoe_panel.models.gguf_meta import GGUFInfo
from zoe_panel.telemetry.base import Sample

DATA = Path(__file__).parent.parent / "data"
SMOL = GGUFInfo.from_json(json.loads((DATA / "gguf" / "smollm2-135m-q4_1.json").read_text()))
GEMMA = GGUFInfo.from_json(json.loads((DATA / "gguf" / "gemma-3-270m-q4_k_m.json").read_text()))
X86 = repack_types("x86_64", frozenset({"avx2", "avx512f", "fma"}))
CPU = MemoryBudget("cpu", 20 * GIB, repack_types=X86)


def spec(**kw):  # type: ignore[no-untyped-def]
    return EngineSpec(model="/m/x.gguf", **kw)


# -- the estimate's stages ---------------------------------------------------------------------
def test_repacked_weights_are_what_llama_cpp_logged_as_cpu_repack() -> None:
    # llama-server on this machine: "CPU_REPACK model buffer size = 12.66 MiB" for Gemma-3 (its
    # Q4_K matrices); SmolLM2's Q4_1 has no repacked layout
    gemma = estimate(GEMMA, spec(ctx=2048, parallel=1), CPU)
    assert round(gemma.repack_bytes / MIB, 2) == 12.66
    assert estimate(SMOL, spec(ctx=2048), CPU).repack_bytes == 0
    # an Arm CPU with dot products repacks the Q6_K and Q8_0 matrices as well
    arm = MemoryBudget("cpu", 20 * GIB, repack_types=repack_types("aarch64", frozenset({"asimd", "asimddp"})))
    assert estimate(GEMMA, spec(ctx=2048, parallel=1), arm).repack_bytes > gemma.repack_bytes
    # layers on a GPU are not repacked; a CPU without AVX2 repacks nothing
    assert estimate(GEMMA, spec(), MemoryBudget("unified", 8 * GIB, repack_types=X86)).repack_bytes == 0
    assert repack_types("x86_64", frozenset({"sse4_2"})) == ()


def test_tables_grow_with_the_vocabulary() -> None:
    # measured: heap + anonymous pages at READY minus every buffer: ~21 MiB (SmolLM2), ~50 MiB (Gemma-3)
    smol, gemma = estimate(SMOL, spec(), CPU), estimate(GEMMA, spec(), CPU)
    assert 18 * MIB < smol.tables_bytes < 24 * MIB and 46 * MIB < gemma.tables_bytes < 54 * MIB


def test_ready_plus_after_load_is_the_total_and_the_verdict_covers_it() -> None:
    e = estimate(SMOL, spec(ctx=2048, cache_ram_mib=512), CPU)
    assert e.total_bytes == e.at_ready_bytes + e.after_load_bytes
    assert e.prompt_cache_bytes == 512 * MIB and e.checkpoint_bytes == 0  # full attention: none
    # on the CPU the compute buffer's pages are touched by prompts after READY, not at load
    assert e.compute_at_ready_bytes == 0 and e.working_set_bytes == e.compute_bytes
    # and each slot's sampling buffers over the vocabulary (4 slots × 49152 tokens × 24 bytes + 1 MiB)
    assert e.serving_bytes == 4 * (49152 * 24 + MIB)
    assert e.after_load_bytes == 512 * MIB + e.compute_bytes + e.serving_bytes
    # enough memory for READY but not for the prompt cache: the verdict says so
    budget = MemoryBudget("cpu", e.at_ready_bytes + 600 * MIB, repack_types=X86)
    assert estimate(SMOL, spec(ctx=2048, cache_ram_mib=0), budget).verdict is Verdict.FITS
    assert estimate(SMOL, spec(ctx=2048, cache_ram_mib=2048), budget).verdict is Verdict.WONT_FIT
    data = e.to_json()
    assert data["at_ready_bytes"] + data["after_load_bytes"] == data["total_bytes"]
    assert {"prompt_cache_bytes", "checkpoint_bytes", "after_load_bytes"} <= set(data)


def test_checkpoints_are_per_slot_sliding_window_states() -> None:
    # Gemma-3: the SWA cache holds 15 KiB per cell (15.00 MiB for 1024 cells in its log); a checkpoint
    # is one slot's window plus a ubatch: 512 + 512 cells = 15 MiB
    e = estimate(GEMMA, spec(ctx=4096, parallel=4, ctx_checkpoints=8, cache_ram_mib=0), CPU)
    assert e.checkpoint_each_bytes == 15 * MIB
    assert e.checkpoint_bytes == 8 * 4 * 15 * MIB
    assert any("checkpoints" in n for n in e.notes)
    # none with --swa-full, none for full attention, none for llama-cpp-python (no such feature)
    assert estimate(GEMMA, spec(ctx=4096, swa_full=True), CPU).checkpoint_bytes == 0
    assert estimate(SMOL, spec(ctx=4096, ctx_checkpoints=32), CPU).checkpoint_bytes == 0
    py = estimate(GEMMA, spec(ctx=4096, flavor="llama-cpp-python", parallel=1, cache_ram_mib=4096), CPU)
    assert py.checkpoint_bytes == 0 and py.prompt_cache_bytes == 0


def test_a_gpu_commits_its_compute_buffer_at_ready() -> None:
    orin = MemoryBudget("unified", 12 * GIB)
    e = estimate(SMOL, spec(ctx=4096, cache_ram_mib=0), orin)
    assert e.compute_at_ready_bytes == e.compute_bytes and e.working_set_bytes == 0
    assert e.compute_host_bytes == 512 * (8 * 576 + 2 * 4096)  # the pinned inputs beside it


@pytest.mark.parametrize(
    ("ctx", "ub", "fa", "cuda_mib", "host_mib"),
    [  # the H200 sweep (bench/results/h200/gpu-sweep-1.md): CUDA0 and CUDA_Host compute buffers
        (2048, 256, "on", 23.5, 5.0),
        (8192, 512, "on", 53.0, 16.0),
        (32768, 1024, "on", 154.0, 80.0),
        (8192, 512, "off", 545.0, 25.0),
        (32768, 1024, "off", 4258.0, 146.0),
    ],
)
def test_cuda_compute_buffers_match_the_h200_sweep(
    ctx: int, ub: int, fa: str, cuda_mib: float, host_mib: float
) -> None:
    from types import SimpleNamespace

    from zoe_panel.models.fit import KVCache, compute_bytes, compute_host_bytes

    # the sweep's synthetic 1.1B model: 22 layers, 2048 wide, 32 heads, FFN 5632, SmolLM2's vocabulary
    shape = SimpleNamespace(n_ff=5632, n_embd=2048, n_head=32, n_vocab=49152)
    caches = [KVCache("KV", ctx, 22, 1, "f16", "f16", 0, 0)]
    s = spec(ctx=ctx, ubatch=ub, flash_attn=fa)
    assert compute_bytes(shape, s, caches, gpu=True) / MIB == pytest.approx(cuda_mib, rel=0.05)  # type: ignore[arg-type]
    assert compute_host_bytes(shape, s, caches) / MIB == pytest.approx(host_mib, rel=0.05)  # type: ignore[arg-type]


def test_discrete_gpu_parts_against_gpu_memory_host_parts_against_host_memory() -> None:
    # the H200 run: all layers on the GPU, a 176 GiB KV cache must be compared with the GPU's free
    # memory, not with the host's MemAvailable
    h200 = MemoryBudget("discrete", 1800 * GIB, gpu_free_bytes=80 * GIB, gpu_total_bytes=141 * GIB)
    big = estimate(SMOL, spec(ctx=4_000_000, cache_ram_mib=0), h200)
    pools = {p.name: p for p in big.pools()}
    assert pools["GPU"].need_bytes > 80 * GIB and pools["GPU"].verdict is Verdict.WONT_FIT
    assert pools["host"].verdict is Verdict.FITS and big.verdict is Verdict.WONT_FIT
    assert big.to_json()["memory_kind"] == "discrete" and big.gpu_bytes > 0
    # the prompt cache is host RAM: a small host runs out though the GPU has room
    small_host = MemoryBudget("discrete", 2 * GIB, gpu_free_bytes=139 * GIB, gpu_total_bytes=141 * GIB)
    e = estimate(SMOL, spec(ctx=4096, cache_ram_mib=4096), small_host)
    pools = {p.name: p for p in e.pools()}
    assert pools["GPU"].verdict is Verdict.FITS and pools["host"].verdict is Verdict.WONT_FIT
    assert e.verdict is Verdict.WONT_FIT and e.available_bytes == 2 * GIB
    # unified memory (Jetson) stays one pool
    assert [p.name for p in estimate(SMOL, spec(), MemoryBudget("unified", 12 * GIB)).pools()] == ["memory"]


def test_memory_kind_comes_from_the_hardware_not_the_sampler(tmp_path: Path) -> None:
    no_tegra = tmp_path / "nv_tegra_release"
    host_sample = Sample(0.0, "host", 16 * GIB, 4 * GIB, 12 * GIB, 0)
    assert memory_kind("host", host_sample, no_tegra, gpu_total_bytes=141 * GIB) == "discrete"
    assert memory_kind("host", host_sample, no_tegra) == "cpu"
    no_tegra.write_text("# R36 (release), REVISION: 4.0\n")
    assert memory_kind("host", host_sample, no_tegra, gpu_total_bytes=141 * GIB) == "unified"


# -- the flags ---------------------------------------------------------------------------------
def test_argv_always_bounds_the_prompt_cache_and_the_checkpoints() -> None:
    argv = llama_server_argv("llama-server", spec(cache_ram_mib=768, ctx_checkpoints=4))
    assert argv[argv.index("--cache-ram") + 1] == "768" and argv[argv.index("--ctx-checkpoints") + 1] == "4"
    # a build that lists neither (the r36.4.0 image) has neither feature: nothing to pass
    old = Capabilities(flags=("--ctx-size", "--port", "-np"))
    assert "--cache-ram" not in llama_server_argv("llama-server", spec(), old)
    middle = Capabilities(flags=("--ctx-size", "--swa-checkpoints"))
    assert "--swa-checkpoints" in llama_server_argv("llama-server", spec(), middle)


def test_spec_refuses_a_negative_cache() -> None:
    from zoe_panel.errors import ConfigError

    with pytest.raises(ConfigError, match="prompt cache"):
        spec(cache_ram_mib=-5)


# -- the alarm ---------------------------------------------------------------------------------
def _sample(available_mib: int, t: float = 100.0, rss_mib: int | None = 900) -> Sample:
    s = Sample(t, "host", 16 * GIB, 16 * GIB - available_mib * MIB, available_mib * MIB, 0)
    return s.with_engine(rss_mib * MIB if rss_mib else None)


def _ready(cache: int = 2048, run_id: str = "r1") -> EngineStatus:
    return EngineStatus(EngineState.READY, spec=spec(cache_ram_mib=cache), run_id=run_id, pid=123)


def test_alarm_below_the_floor_while_serving_with_a_smaller_cache_offered() -> None:
    floor = 1024 * MIB
    assert check(_sample(3000), _ready(), floor) is None
    alarm = check(_sample(700), _ready(), floor, ready_rss_bytes=400 * MIB)
    assert alarm is not None and alarm.growth_bytes == 500 * MIB and alarm.cache_ram_mib == 2048
    # what is missing under the floor (324 MiB + margin) given back, and at least half
    assert alarm.suggested_cache_ram_mib == 1024
    assert "restart with 1024 MiB" in alarm.message() and "700 MiB available" in alarm.message()
    # not while loading or stopped: the load has its own failure path
    assert check(_sample(700), EngineStatus(EngineState.STARTING, spec=spec()), floor) is None
    # hysteresis: the episode lasts until memory is back above floor + margin
    assert check(_sample(1030), _ready(), floor, current=alarm) is alarm
    assert check(_sample(1024 + CLEAR_MARGIN // MIB + 1), _ready(), floor, current=alarm) is None
    assert smaller_cache(100, 0, floor) == 0 and smaller_cache(8192, 900 * MIB, floor) == 4096


def test_alarm_watch_raises_and_clears_once_and_shares_the_episode(tmp_path: Path) -> None:
    watch = AlarmWatch(tmp_path)
    floor = 1024 * MIB
    assert watch.observe(_sample(700, t=1.0), _ready(), floor) == "raised"
    assert watch.observe(_sample(650, t=2.0), _ready(), floor) is None  # the same episode
    stored = read_alarm(tmp_path)
    assert stored is not None and stored.since == 1.0 and stored.available_bytes == 700 * MIB
    assert AlarmWatch(tmp_path).current == stored  # a restarted panel (or the CLI) sees it
    assert watch.observe(_sample(4000, t=3.0), _ready(), floor) == "cleared"
    assert read_alarm(tmp_path) is None


# -- failed loads ------------------------------------------------------------------------------
KV_OOM_LOG = """\
load_tensors:   CPU_Mapped model buffer size =    92.11 MiB
llama_context:        CPU  output buffer size =     0.19 MiB
ggml_backend_cpu_buffer_type_alloc_buffer: failed to allocate buffer of size 96636764160
llama_init_from_model: failed to initialize the context: failed to allocate buffer for kv cache
"""


def test_a_failed_load_records_how_far_it_got() -> None:
    events = parse_lines([(float(i), line) for i, line in enumerate(KV_OOM_LOG.splitlines())])
    progress = load_progress(events, predicted_at_ready=200 * MIB)
    assert progress["completed"] == "weights" and progress["failed_at"] == "KV cache"
    assert progress["share"] == pytest.approx(92.3 / 200, abs=0.01)
    assert progress["failure"] == "oom" and progress["requested_bytes"] == 96636764160
    assert progress_text(progress).startswith("failed at the KV cache, after the weights (46 %")


def test_history_gains_the_new_columns_and_keeps_failed_loads_out_of_calibration(tmp_path: Path) -> None:
    from zoe_panel.memory import measured_bytes

    db = tmp_path / "history.sqlite"
    old = sqlite3.connect(db)  # a history written before this release
    old.execute(  # the runs table as the previous release created it
        "CREATE TABLE runs (run_id TEXT PRIMARY KEY, started_at REAL, ready_at REAL, ended_at REAL, outcome TEXT, "
        "model TEXT, model_path TEXT, model_size_bytes INTEGER, backend TEXT, flavor TEXT, engine_version TEXT, "
        "spec_json TEXT, estimate_json TEXT, reason TEXT, diagnosis TEXT, exit_code INTEGER, restarts INTEGER "
        "DEFAULT 0, baseline_ram_used_bytes INTEGER, baseline_gpu_bytes INTEGER, peak_ram_used_bytes INTEGER, "
        "peak_engine_rss_bytes INTEGER, peak_gpu_bytes INTEGER, time_to_ready_s REAL)"
    )
    old.execute("INSERT INTO runs(run_id, outcome, estimate_json) VALUES ('old', 'stopped', '{\"total_bytes\": 5}')")
    old.commit()
    old.close()
    h = History(db)
    run = h.run("old")
    assert run is not None and run.predicted_at_ready_bytes == 5 and run.load_progress == {}
    h.upsert_run("f", outcome="failed", peak_engine_rss_bytes=10 * MIB, load_progress_json=json.dumps({"share": 0.5}))
    failed = h.run("f")
    assert failed is not None and failed.load_progress == {"share": 0.5} and measured_bytes(failed) is None
    h.upsert_run("ok", outcome="stopped", ready_at=2.0, peak_engine_rss_bytes=10 * MIB)
    h.upsert_run("ok", ready_rss_bytes=100, peak_after_ready_rss_bytes=400)
    h.upsert_run("ok", ready_rss_bytes=999)  # the first READY level stays
    ok = h.run("ok")
    assert ok is not None and measured_bytes(ok) == 10 * MIB and ok.growth_after_ready_bytes == 300
    h.close()


def test_runs_report_has_no_error_figure_for_a_failed_load(tmp_path: Path) -> None:
    from zoe_panel.runs_report import run_row

    h = History(tmp_path / "h.sqlite")
    est = {"total_bytes": 900, "at_ready_bytes": 400, "after_load_bytes": 500}
    h.upsert_run("f", outcome="failed", estimate_json=json.dumps(est), peak_engine_rss_bytes=5)
    h.upsert_run("f", load_progress_json=json.dumps({"completed": "weights", "failed_at": "KV cache", "share": 0.0125}))
    row = run_row(h, h.run("f"))  # type: ignore[arg-type]
    assert row["error_pct"] is None and row["load_progress_text"].startswith("failed at the KV cache")
    h.upsert_run("r", outcome="stopped", ready_at=1.0, estimate_json=json.dumps(est), peak_engine_rss_bytes=420)
    h.upsert_run("r", ready_rss_bytes=420, peak_after_ready_rss_bytes=670)
    row = run_row(h, h.run("r"))  # type: ignore[arg-type]
    assert row["error_pct"] == 5.0 and row["growth_after_ready_bytes"] == 250 and row["growth_of_cap_pct"] == 50.0
    h.close()


def test_replace_keeps_the_new_fields() -> None:
    s = replace(spec(), cache_ram_mib=0)
    assert EngineSpec.from_json(s.to_json()).cache_ram_mib == 0
    assert EngineSpec.from_json({"model": "/m/x.gguf"}).ctx_checkpoints == 8  # an older engine.json
