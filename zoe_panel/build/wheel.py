"""Build and install llama-cpp-python (the Python flavour) the same way: variant, smoke, fallback.

pip compiles llama-cpp-python with ``-march=native`` and keeps the wheel in its cache, keyed by
the sdist, not by the compiler flags: a wheel that traps would be handed back on every reinstall.
So the panel builds its own wheel per variant (``pip wheel --no-cache-dir``, flags in CMAKE_ARGS and
CFLAGS) under ``<cache>/wheels/<key>``, installs it into the venv, smoke-decodes, and builds the
next variant when it crashes. Any llama-cpp-python wheel in pip's own cache is removed, so a later
``pip install`` cannot bring an unchecked one back.

llama-cpp-python preloads ``libggml-cpu.so`` by name, so the runtime-dispatch build does not apply;
its portable variant is a fixed x86-64-v3 (AVX2) build instead.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from zoe_panel.build.records import BuildRecord, BuildRecords
from zoe_panel.build.server import LCP_VERSION, BuildError, ensure_source, say
from zoe_panel.build.smoke import smoke_python
from zoe_panel.build.variants import AMX_FLAGS, NO_AMX_CFLAGS, Target, cpu_flags, machine_fingerprint

KIND = "llama-cpp-python"
MARKER = "zoe-llama-cpp-python.json"  # in the venv: which checked wheel is installed there


@dataclass(frozen=True)
class WheelVariant:
    name: str
    cmake_args: tuple[str, ...]
    cflags: str = ""


PY_NATIVE = WheelVariant("native", ("-DGGML_NATIVE=ON",))
PY_NATIVE_NOAMX = WheelVariant("native-noamx", ("-DGGML_NATIVE=ON",), NO_AMX_CFLAGS)
PY_PORTABLE_X86 = WheelVariant(
    "portable",
    ("-DGGML_NATIVE=OFF", "-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON", "-DGGML_BMI2=ON"),
)
PY_PORTABLE = WheelVariant("portable", ("-DGGML_NATIVE=OFF",))


def wheel_variants(mode: str, machine: str, flags: frozenset[str]) -> list[WheelVariant]:
    x86 = machine in ("x86_64", "amd64")
    portable = PY_PORTABLE_X86 if x86 else PY_PORTABLE
    first = PY_NATIVE_NOAMX if x86 and any(f in flags for f in AMX_FLAGS) else PY_NATIVE
    by_name = {v.name: v for v in (first, portable)}
    if mode in ("auto", "best"):
        return [first, portable]
    if mode == "native" and x86 and first is PY_NATIVE_NOAMX:
        return [PY_NATIVE]
    if mode in by_name:
        return [by_name[mode]]
    raise ValueError(f"ZOE_BUILD_VARIANT={mode!r}: use auto, best, native, native-noamx or portable")


def _pip(
    python: str, *args: str, env: dict[str, str] | None = None, quiet: bool = True
) -> subprocess.CompletedProcess[str]:
    argv = [python, "-m", "pip", *args] + (["-qq"] if quiet else [])
    return subprocess.run(argv, capture_output=True, text=True, env=env, check=False)


def installed_version(python: str) -> str:
    done = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.version('llama_cpp_python'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def venv_prefix(python: str) -> Path:
    done = subprocess.run([python, "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True, check=True)
    return Path(done.stdout.strip())


def build_wheel(
    python: str, cache: Path, variant: WheelVariant, target: Target, version: str, jobs: int
) -> tuple[Path, float, list[str]]:
    """Compile the wheel for one variant into its own folder (never pip's cache)."""
    key_dir = cache / "wheels" / f"{KIND}-{version}-{target.label}-{variant.name}"
    found = sorted(key_dir.glob("llama_cpp_python-*.whl"))
    args = [*variant.cmake_args, *target.cmake_args()]
    if found:
        return found[0], 0.0, args
    ensure_source(cache, version)  # the sdist is in <cache>/dl; build from it, not from the index
    sdist = cache / "dl" / f"llama_cpp_python-{version}.tar.gz"
    env = dict(os.environ)
    env["CMAKE_ARGS"] = " ".join(args)
    env["CMAKE_BUILD_PARALLEL_LEVEL"] = str(jobs)
    if variant.cflags:
        for k in ("CFLAGS", "CXXFLAGS"):
            env[k] = f"{env.get(k, '')} {variant.cflags}".strip()
    say(f"building the llama-cpp-python {version} wheel, variant {variant.name} (about 5 min on 2 cores)")
    t0 = time.monotonic()
    key_dir.mkdir(parents=True, exist_ok=True)
    done = _pip(python, "wheel", "--no-deps", "--no-cache-dir", "-w", str(key_dir), str(sdist), env=env)
    found = sorted(key_dir.glob("llama_cpp_python-*.whl"))
    if done.returncode != 0 or not found:
        raise BuildError(f"building the llama-cpp-python wheel failed:\n{(done.stderr or done.stdout)[-2000:]}")
    return found[0], round(time.monotonic() - t0, 1), [*args, *([f"CFLAGS={variant.cflags}"] if variant.cflags else [])]


def ensure_llama_cpp_python(
    python: str,
    cache: Path,
    model: Path,
    *,
    target: Target,
    mode: str = "auto",
    version: str = LCP_VERSION,
    jobs: int = 0,
) -> BuildRecord:
    """llama-cpp-python installed in ``python``'s venv and seen to decode on this machine."""
    records = BuildRecords(cache)
    fp = machine_fingerprint()
    marker = venv_prefix(python) / MARKER
    variants = wheel_variants(mode, platform.machine(), cpu_flags())
    with records.locked():
        _drop_pip_cached_wheels(python)
        chosen = records.chosen(fp, KIND, target.label)
        if (
            mode != "best"
            and chosen is not None
            and chosen.variant in {v.name for v in variants}
            and _marker_key(marker) == chosen.key
            and installed_version(python) == version
        ):
            return chosen
        failures = []
        for variant in variants:
            wheel, build_s, args = build_wheel(python, cache, variant, target, version, jobs or os.cpu_count() or 2)
            key = f"{KIND}-{version}-{target.label}-{variant.name}"
            rec = records.get(key) or BuildRecord(
                key, KIND, str(wheel), variant.name, target.label, version, time.time(), build_s, args
            )
            rec.path = str(wheel)
            records.put(rec)
            done = _pip(python, "install", "--force-reinstall", "--no-deps", "--no-cache-dir", str(wheel))
            if done.returncode != 0:
                raise BuildError(f"installing {wheel.name} failed: {done.stderr[-1000:]}")
            _ensure_runtime_deps(python, version)
            say(f"smoke run: llama-cpp-python ({variant.name}) loads {model.name} and decodes")
            result = smoke_python(python, model, gpu=target.is_gpu, n_predict=32)
            records.add_smoke(key, fp, result)
            if result.ok:
                records.choose(fp, KIND, target.label, key)
                marker.write_text(json.dumps({"key": key, "fingerprint": fp}))
                speed = f"{result.tokens_per_s:.1f} tok/s"
                say(f"llama-cpp-python {variant.name}: decoded {result.tokens} tokens at {speed}")
                return records.get(key) or rec
            failures.append(f"{variant.name}: {result.detail}")
            say(f"llama-cpp-python {variant.name} does not run on this machine: {result.detail[:300]}")
        marker.unlink(missing_ok=True)
        _pip(python, "uninstall", "-y", "llama-cpp-python")  # never leave a trapping wheel installed
        raise BuildError("no llama-cpp-python variant decodes on this machine:\n  " + "\n  ".join(failures))


def _marker_key(marker: Path) -> str:
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return ""
    return (
        str(data.get("key", "")) if isinstance(data, dict) and data.get("fingerprint") == machine_fingerprint() else ""
    )


def _ensure_runtime_deps(python: str, version: str) -> None:
    """The wheel went in with --no-deps; bring its own requirements and the server extra."""
    done = _pip(python, "install", f"llama-cpp-python[server]=={version}")
    if done.returncode != 0:
        raise BuildError(f"installing llama-cpp-python's dependencies failed: {done.stderr[-1000:]}")


def _drop_pip_cached_wheels(python: str) -> None:
    """pip's wheel cache may hold a -march=native llama-cpp-python from an earlier install."""
    _pip(python, "cache", "remove", "llama_cpp_python")
