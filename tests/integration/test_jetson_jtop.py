"""The Jetson telemetry source against the real jtop service on a simulated Orin (root only)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require, wait_for
from sim_jetson import FAKE_SYS, GPU, build_fake_sys

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
    time.sleep(0)
