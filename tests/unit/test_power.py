"""Energy over one reply: RAPL counters (over a simulated powercap tree, wrap included) or the
sampler's power readings; tokens per joule; the board's power modes; History keeps the figures."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from zoe_panel.history import History
from zoe_panel.l4t import power_modes
from zoe_panel.telemetry.base import Sample
from zoe_panel.telemetry.power import Energy, EnergyWindow, power_stats, rapl_joules, rapl_zones
from zoe_panel.telemetry.ring import RingBuffer


def powercap(root: Path, energy_uj: int, max_uj: int = 262_143_328_850) -> Path:
    z = root / "intel-rapl:0"
    z.mkdir(parents=True, exist_ok=True)
    (z / "name").write_text("package-0\n")
    (z / "energy_uj").write_text(f"{energy_uj}\n")
    (z / "max_energy_range_uj").write_text(f"{max_uj}\n")
    sub = root / "intel-rapl:0:0"  # core: inside the package's count, never added again
    sub.mkdir(exist_ok=True)
    (sub / "name").write_text("core\n")
    (sub / "energy_uj").write_text("5\n")
    (sub / "max_energy_range_uj").write_text("10\n")
    return z


def test_rapl_counts_joules_and_survives_a_wrap(tmp_path: Path) -> None:
    z = powercap(tmp_path, 1_000_000)
    zones = rapl_zones(tmp_path)
    assert [x.name for x in zones] == ["package-0"]
    w = EnergyWindow(None, tmp_path).start()
    (z / "energy_uj").write_text("4000000\n")  # 3 J later
    e = w.stop()
    assert e is not None and e.source == "rapl" and e.joules == pytest.approx(3.0)
    assert rapl_joules(zones, [262_143_000_000], [1_000_000]) == pytest.approx((328_850 + 1_000_000) / 1e6)


def test_a_zone_that_cannot_be_read_is_no_source(tmp_path: Path) -> None:
    z = powercap(tmp_path, 1)
    (z / "energy_uj").write_text("n/a\n")  # what a permission-restricted or odd driver leaves
    assert rapl_zones(tmp_path) == []
    assert EnergyWindow(None, tmp_path).start().stop() is None


def test_sampler_power_is_averaged_over_the_reply(tmp_path: Path) -> None:
    ring = RingBuffer()
    now = time.time()
    for dt, w in ((-0.5, 10.0), (0.0, 12.0), (0.5, 14.0)):
        ring.append(Sample(now + dt, "jetson", 1, 1, 1, 0, power_w=w))
    win = EnergyWindow(ring, tmp_path / "none")
    win.t0 = now - 0.2
    e = win.stop()
    assert e is not None and e.source == "jetson" and e.mean_w == pytest.approx(12.0, rel=0.01)
    assert EnergyWindow(RingBuffer(), tmp_path / "none").start().stop() is None  # no power, no figure


def test_tokens_per_joule() -> None:
    got = power_stats(Energy(20.0, 2.0, "nvml"), 100)
    assert got == {"mean_power_w": 10.0, "power_source": "nvml", "tokens_per_j": 5.0}
    assert power_stats(None, 100) == {}


def test_power_modes_from_nvpmodel_conf(tmp_path: Path) -> None:
    conf = tmp_path / "nvpmodel.conf"
    conf.write_text("< POWER_MODEL ID=0 NAME=MAXN >\n< POWER_MODEL ID=1 NAME=10W >\n< PM_CONFIG DEFAULT=1 >\n")
    assert power_modes(conf) == [(0, "MAXN"), (1, "10W")]
    assert power_modes(tmp_path / "absent") == []


def test_history_gains_the_power_columns_and_keeps_old_rows(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE chat_stats (run_id TEXT, t REAL, ttft_ms REAL, prompt_tokens INTEGER, prompt_tokens_per_s "
        "REAL, completion_tokens INTEGER, gen_tokens_per_s REAL, source TEXT, suite TEXT, prompt TEXT, passed "
        "INTEGER, peak_ram_used_bytes INTEGER)"
    )
    db.execute("INSERT INTO chat_stats VALUES ('r0', 1.0, 10, 5, 50, 20, 40, 'engine', '', 'old', NULL, NULL)")
    db.commit()
    db.close()
    h = History(path)
    h.add_chat_stats("r1", {"completion_tokens": 10, "mean_power_w": 9.5, "tokens_per_j": 1.25, "power_source": "rapl"})
    rows = h.chat_stats()
    assert rows[0]["prompt"] == "old" and rows[0]["tokens_per_j"] is None
    assert rows[1]["mean_power_w"] == 9.5 and rows[1]["tokens_per_j"] == 1.25
