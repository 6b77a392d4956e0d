"""What to compile: the accelerator target (CPU, CUDA, Jetson CUDA) and the CPU variant.

Why variants: ``-march=native`` takes every instruction /proc/cpuinfo lists, but some VMs list AMX
and trap ggml's AMX kernels (SIGILL at the first decode; REFERENCE.md §13). So a build is tried,
smoke-decoded, and the next variant is built when it crashes:

* ``native-noamx`` (x86 CPUs listing AMX): ``-march=native`` with ``-mno-amx-*``; one static binary.
* ``native`` (other CPUs): ``-march=native``; one static binary.
* ``portable``: ``GGML_NATIVE=OFF`` + ``GGML_BACKEND_DL`` + ``GGML_CPU_ALL_VARIANTS``, as upstream
  releases do: every CPU variant as a shared library, the best one picked at run time. When its
  pick (the AMX variant) traps, that library is dropped and the next best is used.

``ZOE_BUILD_VARIANT`` = ``auto`` (default: the first candidate that decodes), ``best`` (build every
candidate, keep the fastest that decodes), or a variant name to force it; ``portable`` is the
documented safe switch.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

AMX_FLAGS = ("amx_tile", "amx_int8", "amx_bf16")
NO_AMX_CFLAGS = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
MODES = ("auto", "best")
COMMON_ARGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DGGML_RPC=ON",  # llama-server --rpc and rpc-server, for a model split over several boards
)


@dataclass(frozen=True)
class Variant:
    """A CPU code-generation choice for one build."""

    name: str
    cmake_args: tuple[str, ...]
    cflags: str = ""
    shared: bool = False  # a folder of shared libraries next to the binary (runtime dispatch)
    about: str = ""


NATIVE = Variant("native", ("-DGGML_NATIVE=ON", "-DBUILD_SHARED_LIBS=OFF"), about="-march=native, static")
NATIVE_NOAMX = Variant(
    "native-noamx",
    ("-DGGML_NATIVE=ON", "-DBUILD_SHARED_LIBS=OFF"),
    cflags=NO_AMX_CFLAGS,
    about="-march=native without AMX, static",
)
PORTABLE = Variant(
    "portable",
    (
        "-DGGML_NATIVE=OFF",
        "-DGGML_BACKEND_DL=ON",
        "-DGGML_CPU_ALL_VARIANTS=ON",
        "-DBUILD_SHARED_LIBS=ON",
        # The libraries travel with the binary (cache folder, engine image): look for them beside it.
        "-DCMAKE_BUILD_WITH_INSTALL_RPATH=ON",
        "-DCMAKE_INSTALL_RPATH=$ORIGIN",
    ),
    shared=True,
    about="all CPU variants as shared libraries, picked at run time (as upstream releases)",
)
VARIANTS = {v.name: v for v in (NATIVE, NATIVE_NOAMX, PORTABLE)}


@dataclass(frozen=True)
class Target:
    """The accelerator a build is for."""

    accel: str = "cpu"  # cpu | cuda | cuda-tegra
    cuda_arch: str = ""  # "90", "87", "86;89", or "native"

    @property
    def label(self) -> str:
        if self.accel == "cpu":
            return "cpu"
        arch = self.cuda_arch.replace(";", "-") or "native"
        return f"{self.accel}-sm{arch}" if arch != "native" else f"{self.accel}-native"

    @property
    def is_gpu(self) -> bool:
        return self.accel != "cpu"

    def cmake_args(self) -> tuple[str, ...]:
        if self.accel == "cpu":
            return ()
        args: tuple[str, ...] = ("-DGGML_CUDA=ON", f"-DCMAKE_CUDA_ARCHITECTURES={self.cuda_arch or 'native'}")
        if self.accel == "cuda-tegra":
            # Orin = sm_87. VMM off: on Jetson the virtual-memory pool fails where plain cudaMalloc
            # works (REFERENCE.md §1.3); unified memory makes the pool pointless anyway.
            args += ("-DGGML_CUDA_NO_VMM=ON",)
        return args


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The first CPU's feature flags ('flags' on x86, 'Features' on Arm)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def candidates(machine: str, flags: frozenset[str]) -> list[Variant]:
    """Variants to try, in order: the fastest-measured first (BENCHMARKS.md, build variants)."""
    if machine in ("x86_64", "amd64") and any(f in flags for f in AMX_FLAGS):
        return [NATIVE_NOAMX, PORTABLE]
    return [NATIVE, PORTABLE]


def choose_variants(mode: str, machine: str, flags: frozenset[str]) -> list[Variant]:
    """The variants a build tries for ``ZOE_BUILD_VARIANT``; raise ValueError for an unknown one."""
    if mode in MODES:
        return candidates(machine, flags)
    if mode in VARIANTS:
        if mode == "native-noamx" and machine not in ("x86_64", "amd64"):
            raise ValueError("native-noamx is an x86 variant")
        return [VARIANTS[mode]]
    raise ValueError(f"ZOE_BUILD_VARIANT={mode!r}: use auto, best or one of {', '.join(VARIANTS)}")


def detect_target(env: Mapping[str, str], *, tegra_release: Path = Path("/etc/nv_tegra_release")) -> Target:
    """CUDA where nvcc and a working GPU are found, or on a Jetson; ZOE_FORCE_CPU=1 forces the CPU.
    ``ZOE_BUILD_TARGET`` forces one (a compile check of the Jetson branch on an x86 GPU machine)."""
    forced = env.get("ZOE_BUILD_TARGET", "")
    arch = env.get("ZOE_CUDA_ARCH", "")
    if env.get("ZOE_FORCE_CPU") == "1" or forced == "cpu":
        return Target("cpu")
    if forced == "cuda-tegra" or (not forced and tegra_release.exists()):
        return Target("cuda-tegra", arch or "87")
    if forced == "cuda" or (shutil.which("nvcc") and gpu_compute_caps()):
        return Target("cuda", arch or ";".join(gpu_compute_caps()) or "native")
    if forced:
        raise ValueError(f"ZOE_BUILD_TARGET={forced!r}: use cpu, cuda or cuda-tegra")
    return Target("cpu")


def gpu_compute_caps() -> list[str]:
    """The GPUs' compute capabilities as CMake wants them ('9.0' -> '90'), deduplicated; [] if none."""
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if done.returncode != 0:
        return []
    caps = [line.strip().replace(".", "") for line in done.stdout.splitlines() if line.strip()]
    return sorted({c for c in caps if c.isdigit()})


def machine_fingerprint(cpuinfo: Path = Path("/proc/cpuinfo"), machine_id: Path = Path("/etc/machine-id")) -> str:
    """Which machine a smoke run vouches for: its id and its CPU's model and flags. A cache copied
    to (or shared with) another machine is smoke-run again there."""
    try:
        ident = machine_id.read_text().strip()
    except OSError:
        ident = socket.gethostname()
    model = ""
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    blob = "\n".join([ident, platform.machine(), model, " ".join(sorted(cpu_flags(cpuinfo)))])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def configure_env(variant: Variant, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for CMake's first configure: C/C++ flags a variant adds (CMake reads CFLAGS)."""
    env = dict(os.environ if base is None else base)
    if variant.cflags:
        for key in ("CFLAGS", "CXXFLAGS"):
            env[key] = f"{env.get(key, '')} {variant.cflags}".strip()
    return env
