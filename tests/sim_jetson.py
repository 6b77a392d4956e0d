"""A simulated Jetson for tests: the device files the jetson-stats service and the panel read.

Written from the layout the jtop service expects under JTOP_TESTING=1 (/fake_sys: CPU cpufreq,
the iGPU devfreq node with its ``load`` in per-mille, EMC clocks) and the files a board has in
/etc (nv_tegra_release, nvpmodel.conf). Values are those of a 16 GB Orin NX on L4T R36.4.
"""

from __future__ import annotations

import os
from pathlib import Path

FAKE_SYS = Path("/fake_sys")
GPU = "17000000.gpu"


def _w(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def build_fake_sys(root: Path = FAKE_SYS, *, cpus: int = 8, gpu_load_permille: int = 370) -> None:
    stat = ["cpu  26716126 25174 7198445 948399047 900582 0 354519 0 0 0"]
    for n in range(cpus):
        stat.append(f"cpu{n} 1673575 1889 461134 59280326 55795 0 10322 0 0 0")
        freq = root / "devices/system/cpu" / f"cpu{n}" / "cpufreq"
        for name, value in (
            ("scaling_governor", "schedutil"),
            ("scaling_min_freq", "729600"),
            ("scaling_max_freq", "1984000"),
            ("scaling_cur_freq", "1420800"),
            ("cpuinfo_min_freq", "115200"),
            ("cpuinfo_max_freq", "1984000"),
            ("cpuinfo_cur_freq", "1420800"),
        ):
            _w(freq / name, value)
    stat += [
        "intr 1 0",
        "ctxt 1028840383",
        "btime 1674644431",
        "processes 30001646",
        "procs_running 1",
        "procs_blocked 0",
        "softirq 1 0",
    ]
    _w(root / "stat", "\n".join(stat) + "\n")
    node = root / "devices/platform" / GPU / "devfreq" / GPU
    _w(node / "device/of_node/name", "gpu")
    for name, value in (
        ("cur_freq", "918000000"),
        ("max_freq", "918000000"),
        ("min_freq", "306000000"),
        ("governor", "nvhost_podgov"),
    ):
        _w(node / name, value)
    for name, value in (
        ("railgate_enable", "1"),
        ("tpc_pg_mask", "0"),
        ("enable_3d_scaling", "1"),
        ("load", str(gpu_load_permille)),
    ):
        _w(node / "device" / name, value)
    link = root / "class/devfreq" / GPU
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        os.symlink(node, link)
    emc = root / "kernel/debug/bpmp/debug/clk/emc"
    for name, value in (
        ("rate", "3199000000"),
        ("max_rate", "3199000000"),
        ("min_rate", "204000000"),
        ("mrq_rate_locked", "3199000000"),
    ):
        _w(emc / name, value)
    _w(root / "kernel/actmon_avg_activity/mc_all", "0")
    # INA3221 power monitor (hwmon, JetPack 5+ layout): mV and mA per rail
    hw = root / "bus/i2c/devices/1-0040"
    _w(hw / "name", "ina3221")
    rails = (("VDD_IN", 5000, 2400), ("VDD_CPU_GPU_CV", 5000, 900), ("VDD_SOC", 5000, 300))
    for n, (label, mv, ma) in enumerate(rails, start=1):
        _w(hw / "hwmon/hwmon3" / f"in{n}_label", label)
        _w(hw / "hwmon/hwmon3" / f"in{n}_input", str(mv))
        _w(hw / "hwmon/hwmon3" / f"curr{n}_input", str(ma))
        _w(hw / "hwmon/hwmon3" / f"curr{n}_crit", "32760")
        _w(hw / "hwmon/hwmon3" / f"curr{n}_max", "32760")


def build_thermal(virtual: Path) -> None:
    """Thermal zones and DMI identity, written into a tmpfs mounted on /sys/devices/virtual."""
    _w(virtual / "dmi/id/board_name", "Zoe simulated Orin NX 16GB")
    for n, (name, milli_c) in enumerate((("cpu-thermal", 48500), ("gpu-thermal", 51250), ("soc0-thermal", 47000))):
        _w(virtual / "thermal" / f"thermal_zone{n}" / "type", name)
        _w(virtual / "thermal" / f"thermal_zone{n}" / "temp", str(milli_c))


def build_board_files(etc: Path, *, l4t: str = "R36 (release), REVISION: 4.3") -> None:
    """/etc of an Orin NX: the L4T release line and an nvpmodel.conf with its power modes."""
    major, _, rest = l4t.partition(" (release), REVISION: ")
    _w(
        etc / "nv_tegra_release",
        f"# {major} (release), REVISION: {rest}, GCID: 38968081, BOARD: generic, EABI: aarch64, "
        "DATE: Thu Jan  9 16:00:00 UTC 2025\n# KERNEL_VARIANT: oot\n",
    )
    _w(
        etc / "nvpmodel.conf",
        "< POWER_MODEL ID=0 NAME=MAXN >\n< POWER_MODEL ID=1 NAME=10W >\n< POWER_MODEL ID=2 NAME=15W >\n"
        "< POWER_MODEL ID=3 NAME=25W >\n< PM_CONFIG DEFAULT=2 >\n",
    )
