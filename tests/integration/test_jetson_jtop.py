"""The Jetson telemetry source against the real jtop service on a simulated Orin (root only)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require, wait_for
from sim_jetson import FAKE_SYS, GPU, build_fake_sys

from zoe_panel.settings import Settings
from zoe_panel.telemetry.jtop_source import JetsonSource
from zoe_panel.telemetry.registry import pick_source
from zoe_panel.telemetry.ring import RingBuffer
from zoe_panel.telemetry.sampler import Sampler

pytestmark = pytest.mark.integration
SOCK = Path("/run/jtop.sock")
HERE = Path(__file__).resolve().parent.parent


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
    SOCK.unlink(missing_ok=True)


@pytest.fixture
def jtop_service() -> Iterator[subprocess.Popen[bytes]]:
    require(os.geteuid() == 0, "the jtop service needs root")
    require(shutil.which("unshare") is not None, "unshare (util-linux) is needed for the private /sys mount")
    require(not SOCK.exists(), "a jtop service already runs on this machine")
    subprocess.run(["groupadd", "-f", "jtop"], check=True)  # the service's socket group, as its installer makes
    build_fake_sys(gpu_load_permille=370)
    log = open(HERE / ".jtop-service.log", "wb")  # noqa: SIM115 - closed in teardown
    proc = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", sys.executable, str(HERE / "run_jtop_service.py")],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: SOCK.exists() or proc.poll() is not None, 30)
        require(SOCK.exists(), "jtop service did not start: " + (HERE / ".jtop-service.log").read_text()[-800:])
        yield proc
    finally:
        _stop(proc)
        log.close()
        shutil.rmtree(FAKE_SYS, ignore_errors=True)


def test_source_reads_the_real_service(jtop_service: list[subprocess.Popen[bytes]]) -> None:
    src = JetsonSource(interval_s=0.5)
    try:
        assert src.is_available()[0]
        s = wait_for(lambda: (x := src.sample()).power_w is not None and x, 15)
        assert s.source == "jetson"
        assert s.gpu_util_pct == pytest.approx(37.0)  # 370 per-mille in the devfreq node
        assert s.power_w == pytest.approx(12.0)  # VDD_IN: 5000 mV × 2400 mA
        assert s.power_cpu_gpu_w == pytest.approx(4.5)  # VDD_CPU_GPU_CV: 5000 mV × 900 mA
        assert s.temp_c == pytest.approx(51.25)  # hottest zone, gpu-thermal
        assert s.ram_total_bytes > 0 and s.ram_available_bytes <= s.ram_total_bytes
        # the service reads the files live: a busier GPU shows up in the next samples
        (FAKE_SYS / "devices/platform" / GPU / "devfreq" / GPU / "device/load").write_text("900")
        wait_for(lambda: src.sample().gpu_util_pct == pytest.approx(90.0), 15, 0.25)
    finally:
        src.close()


def test_auto_picks_jetson_and_the_sampler_survives_a_service_restart(
    jtop_service: list[subprocess.Popen[bytes]],
) -> None:
    source, notes = pick_source("auto")
    assert source.name == "jetson", notes
    ring = RingBuffer()
    sampler = Sampler(source, ring, hz=10)
    sampler.start()
    try:
        wait_for(lambda: len(ring) >= 3, 15)
        _stop(jtop_service)
        wait_for(lambda: sampler.stats.errors > 0, 20)
        assert (
            "jtop" in sampler.stats.last_error
            or "closed" in sampler.stats.last_error.lower()
            or sampler.stats.last_error
        )
        assert sampler.running
    finally:
        sampler.stop()


def test_without_the_service_auto_falls_back_to_host_with_a_note() -> None:
    if SOCK.exists():
        pytest.skip("a jtop service runs here")
    source, notes = pick_source("auto")
    assert source.name == "host"
    assert any(n.startswith("jetson:") and "jtop" in n for n in notes)
    assert any(n.startswith("nvml:") for n in notes) or source.name == "host"


def test_a_reply_on_the_simulated_orin_gets_its_power_and_tokens_per_joule(
    jtop_service: list[subprocess.Popen[bytes]], settings_with_model: Settings, zoe_home: Path, tmp_path: Path
) -> None:
    """The real engine answers while the real jtop service reads the simulated INA3221 (VDD_IN 12 W):
    the reply is recorded with its mean power and tok/J, the run with the board's power mode, and the
    board's modes are listed."""
    from conftest import engine_runtime
    from sim_jetson import build_board_files

    from zoe_panel.chat import ChatParams
    from zoe_panel.models.demo import SMOLLM2
    from zoe_panel.telemetry.power import power_stats

    etc = tmp_path / "etc"
    build_board_files(etc)
    (tmp_path / "nvpmodel-status").write_text("pmode:0003 fmode:default\n")
    settings = settings_with_model.replace(
        telemetry="jetson",
        nvpmodel_conf=etc / "nvpmodel.conf",
        nvpmodel_status=tmp_path / "nvpmodel-status",
    )
    with engine_runtime(settings, sampler=True) as rt:
        assert rt.power_modes() == [(0, "MAXN"), (1, "10W"), (2, "15W"), (3, "25W")]
        wait_for(lambda: (s := rt.ring.latest()) is not None and s.power_w is not None, 20)
        rt.engine.start(rt.default_spec(SMOLLM2.filename, ctx=2048))
        status = rt.engine.wait(60)
        assert status.state.value == "READY"
        window = rt.energy_window()
        _, stats = rt.chat_client().complete(
            [{"role": "user", "content": "Count to ten."}], ChatParams(max_tokens=48, seed=1)
        )
        energy = window.stop()
        assert energy is not None and energy.source == "jetson"
        assert energy.mean_w == pytest.approx(12.0)
        got = power_stats(energy, stats.completion_tokens)
        assert got["tokens_per_j"] == pytest.approx(stats.completion_tokens / energy.joules, rel=1e-3)
        rt.history.add_chat_stats(status.run_id, stats.to_json() | got)
        row = rt.history.last_chat_stats()
        assert row is not None and row["mean_power_w"] == pytest.approx(12.0) and row["power_source"] == "jetson"
        rt.engine.stop()
        run = wait_for(lambda: (r := rt.history.run(status.run_id or "")) and r.power_mode and r, 10)
        assert run.power_mode.startswith("25W")
