"""Host telemetry over real and simulated /proc/meminfo files; ring and sampler behaviour."""

import threading
import time
from pathlib import Path

from zoe_panel.telemetry.base import Sample
from zoe_panel.telemetry.host import HostSource, parse_meminfo
from zoe_panel.telemetry.ring import RingBuffer, downsample
from zoe_panel.telemetry.sampler import Sampler

DATA = Path(__file__).parent.parent / "data" / "telemetry"


def test_real_meminfo_gives_available_not_free() -> None:
    s = HostSource().sample()
    mem = parse_meminfo(Path("/proc/meminfo").read_text())
    assert s.ram_total_bytes == mem["MemTotal"]
    assert abs(s.ram_available_bytes - mem["MemAvailable"]) < 256 * 2**20
    assert s.ram_used_bytes == s.ram_total_bytes - s.ram_available_bytes
    assert s.gpu_mem_used_bytes is None  # no NvMap on a PC


def test_orin_meminfo_exposes_the_gpu_share() -> None:
    s = HostSource(DATA / "orin-nx-16gb-meminfo.txt").sample()
    assert s.ram_total_bytes == 15_655_116 * 1024
    assert s.ram_available_bytes == 9_876_540 * 1024
    assert s.gpu_mem_used_bytes == 2_345_678 * 1024
    assert s.swap_total_bytes == 7_827_552 * 1024 and s.swap_used_bytes == 1024 * 1024


def make(t: float, used: int) -> Sample:
    return Sample(
        t=t, source="x", ram_total_bytes=100, ram_used_bytes=used, ram_available_bytes=100 - used, ram_cached_bytes=0
    )


def test_ring_keeps_only_the_window() -> None:
    ring = RingBuffer(seconds=60)
    for i in range(200):
        ring.append(make(float(i), i % 50))
    snap = ring.snapshot()
    assert snap[0].t == 139.0 and snap[-1].t == 199.0
    assert [s.t for s in ring.snapshot(since=190.5)] == [float(x) for x in range(191, 200)]


def test_downsample_keeps_spikes_and_the_live_edge() -> None:
    samples = [make(float(i), 1) for i in range(10_000)]
    samples[5_003] = make(5003.0, 99)
    out = downsample(samples, 500)
    assert len(out) == 500 and max(s.ram_used_bytes for s in out) == 99 and out[-1] is samples[-1]


class FlakySource:
    """A source that fails every other call (a jtop service restarting, say)."""

    name = "flaky"

    def __init__(self) -> None:
        self.calls = 0

    def is_available(self) -> tuple[bool, str]:
        return True, ""

    def sample(self) -> Sample:
        self.calls += 1
        if self.calls % 2 == 0:
            raise OSError("service went away")
        return make(time.time(), 10)

    def engine_gpu_bytes(self, pid: int) -> None:
        return None

    def close(self) -> None:
        pass


def test_sampler_survives_source_errors_and_speeds_up_while_loading() -> None:
    ring = RingBuffer()
    loading = threading.Event()
    sampler = Sampler(FlakySource(), ring, hz=2, hz_loading=20, is_loading=loading.is_set)
    assert sampler.current_hz() == 2
    loading.set()
    assert sampler.current_hz() == 20
    sampler.start()
    try:
        deadline = time.monotonic() + 10
        while sampler.stats.samples < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        sampler.stop()
    assert sampler.stats.samples >= 5 and sampler.stats.errors >= 4
    assert "service went away" in sampler.stats.last_error
    assert len(ring) == sampler.stats.samples


def test_sampler_adds_the_engine_rss() -> None:
    import os

    sampler = Sampler(HostSource(), RingBuffer(), engine_pid=os.getpid)
    s = sampler.sample_once()
    assert s is not None and s.engine_rss_bytes and s.engine_rss_bytes > 10 * 2**20


def test_orin_budget_reports_what_the_gpu_already_holds(tmp_path: Path) -> None:
    from zoe_panel.history import History
    from zoe_panel.memory import MemoryAdvisor
    from zoe_panel.models.store import ModelStore

    orin = HostSource(DATA / "orin-nx-16gb-meminfo.txt").sample()
    advisor = MemoryAdvisor(
        ModelStore(tmp_path / "models", tmp_path / "cache.json"),
        History(tmp_path / "h.sqlite"),
        latest_sample=lambda: orin,
        source_name=lambda: "host",
    )
    b = advisor.budget()
    # NvMapMemUsed makes it a Jetson even without jtop; the GPU share is shown, not subtracted twice
    assert b.kind == "unified" and b.gpu_held_bytes == 2_345_678 * 1024
    assert b.host_available_bytes == 9_876_540 * 1024
    pc = HostSource().sample()
    pc_budget = MemoryAdvisor(
        ModelStore(tmp_path / "models", tmp_path / "cache.json"),
        History(tmp_path / "h2.sqlite"),
        latest_sample=lambda: pc,
        source_name=lambda: "host",
    ).budget()
    assert pc_budget.kind == "cpu" and pc_budget.gpu_held_bytes is None
