"""Build llama-server (with rpc-server) and keep the first variant, or the fastest, that decodes.

Flow for one target (CPU, CUDA, Jetson CUDA):

1. The variant chosen earlier on this machine, if its build is still there: done.
2. Else for each candidate variant: reuse its cached build or compile it, smoke-decode the demo
   model; a crash is said on the console and the next variant is built. A runtime-dispatch build
   whose picked CPU library traps gets that library dropped and is smoke-run again.
3. The choice is remembered per machine (``builds.json``). ``best`` builds every candidate and
   keeps the fastest; a forced variant that crashes fails clearly.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from zoe_panel.build.records import BuildRecord, BuildRecords
from zoe_panel.build.smoke import SmokeResult, smoke_server
from zoe_panel.build.variants import (
    COMMON_ARGS,
    Target,
    Variant,
    choose_variants,
    configure_env,
    cpu_flags,
    machine_fingerprint,
)

LCP_VERSION = "0.3.36"
KIND = "llama-server"
# CMake target -> file name in the cache folder
TARGETS = {"llama-server": "llama-server", "ggml-rpc-server": "rpc-server"}
SAFE_SWITCH = "ZOE_BUILD_VARIANT=portable make llama-server"


class BuildError(RuntimeError):
    """A build or every variant's smoke run failed; the message says what to do."""


def say(text: str) -> None:
    """The console: the build runs under make, whose stdout is the binary's path."""
    print(f">> {text}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class BuildConfig:
    cache: Path
    target: Target
    version: str = LCP_VERSION
    mode: str = "auto"  # auto | best | a variant name
    source: Path | None = None  # a llama.cpp tree; None = the vendored one of the sdist
    jobs: int = field(default_factory=lambda: os.cpu_count() or 2)
    smoke_model: Path | None = None  # None = compile only (a compile check, never trusted)
    extra_targets: tuple[str, ...] = ()  # e.g. llama-bench for the GPU benchmark

    def key(self, variant: Variant) -> str:
        return f"{KIND}-{self.version}-{self.target.label}-{variant.name}"


Compiler = Callable[[BuildConfig, Variant, Path], list[str]]


# -- source ------------------------------------------------------------------------------------
def ensure_source(cache: Path, version: str = LCP_VERSION) -> Path:
    """The llama.cpp vendored in the llama-cpp-python sdist, downloaded and unpacked once."""
    src = cache / "src" / f"llama_cpp_python-{version}" / "vendor" / "llama.cpp"
    if (src / "CMakeLists.txt").is_file():
        return src
    sdist = cache / "dl" / f"llama_cpp_python-{version}.tar.gz"
    if not sdist.is_file():
        say(f"downloading the llama-cpp-python {version} sdist (its vendored llama.cpp is what gets built)")
        (cache / "dl").mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-qq", "--no-deps", "--no-binary", ":all:"]
            + ["-d", str(cache / "dl"), f"llama-cpp-python=={version}"],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0 or not sdist.is_file():
            raise BuildError(f"cannot download llama-cpp-python {version}: {done.stderr.strip()[-500:]}")
    (cache / "src").mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist) as tar:
        if sys.version_info >= (3, 12):
            tar.extractall(cache / "src", filter="data")
        else:  # pragma: no cover - the data filter came with 3.12 (and later 3.10/3.11 patch releases)
            tar.extractall(cache / "src")
    return src


# -- compile -------------------------------------------------------------------------------------
def cmake_compile(cfg: BuildConfig, variant: Variant, build_dir: Path) -> list[str]:
    """Configure and build; returns the configure arguments. Progress goes to the console every 10 %."""
    src = cfg.source or ensure_source(cfg.cache, cfg.version)
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    args = [*COMMON_ARGS, *variant.cmake_args, *cfg.target.cmake_args()]
    log_path = build_dir.with_name(build_dir.name + ".log")
    build_dir.parent.mkdir(parents=True, exist_ok=True)
    env = configure_env(variant)
    with log_path.open("w") as log:
        _run(["cmake", "-S", str(src), "-B", str(build_dir), *gen, *args], env, log, log_path)
        targets = [*TARGETS, *cfg.extra_targets]
        _run(
            ["cmake", "--build", str(build_dir), "--target", *targets, "-j", str(cfg.jobs)],
            env,
            log,
            log_path,
            progress=f"{variant.name} ({cfg.target.label})",
        )
    return args


_STEP_RE = re.compile(r"^\[(\d+)/(\d+)\]")


def _run(argv: list[str], env: dict[str, str], log: object, log_path: Path, *, progress: str = "") -> None:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    assert proc.stdout is not None
    shown = -10
    for line in proc.stdout:
        log.write(line)  # type: ignore[attr-defined]
        m = _STEP_RE.match(line)
        if progress and m:
            pct = int(m.group(1)) * 100 // max(1, int(m.group(2)))
            if pct >= shown + 10:
                shown = pct - pct % 10
                say(f"compiling {progress}: {pct}%")
    if proc.wait() != 0:
        tail = "".join(log_path.read_text(errors="replace").splitlines(keepends=True)[-25:])
        raise BuildError(f"{argv[0]} {argv[1]} failed (full log: {log_path}):\n{tail}")


def install_outputs(cfg: BuildConfig, variant: Variant, build_dir: Path, out: Path) -> None:
    """Copy the binaries (and a shared build's libraries) into the cache folder, atomically."""
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    bindir = build_dir / "bin"
    for target in [*TARGETS, *cfg.extra_targets]:
        src = bindir / target
        if src.is_file():
            shutil.copy2(src, tmp / TARGETS.get(target, target))
    if variant.shared:
        for lib in bindir.glob("*.so*"):
            shutil.copy2(lib, tmp / lib.name, follow_symlinks=True)
    if not (tmp / "llama-server").is_file():
        raise BuildError(f"the build produced no llama-server in {bindir}")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)


# -- smoke and fallback ------------------------------------------------------------------------
def smoke(cfg: BuildConfig, binary: Path) -> SmokeResult:
    assert cfg.smoke_model is not None
    return smoke_server(str(binary), cfg.smoke_model, gpu=cfg.target.is_gpu, n_predict=64, runs=3)


# ggml's x86 CPU variants from the fewest features to the most (ggml/src/CMakeLists.txt): the
# dispatcher picks the richest one the CPU lists.
X86_VARIANTS = [
    "x64",
    "sse42",
    "sandybridge",
    "ivybridge",
    "piledriver",
    "haswell",
    "skylakex",
    "cannonlake",
    "cascadelake",
    "icelake",
    "cooperlake",
    "zen4",
    "alderlake",
    "sapphirerapids",
]


def drop_trapping_cpu_variant(folder: Path, result: SmokeResult) -> str:
    """A runtime-dispatch build whose picked CPU library traps: move that library aside, so the
    next best variant is picked. When the log does not say which one was picked, the richest one
    left goes. Returns the dropped variant's name, or ''."""
    if not result.illegal_instruction:
        return ""
    present = [v for v in X86_VARIANTS if (folder / f"libggml-cpu-{v}.so").is_file()]
    name = result.cpu_backend if result.cpu_backend in present else (present[-1] if len(present) > 1 else "")
    if not name:
        return ""
    lib = folder / f"libggml-cpu-{name}.so"
    aside = folder / "dropped"
    aside.mkdir(exist_ok=True)
    os.replace(lib, aside / lib.name)
    return name


def build_variant(cfg: BuildConfig, variant: Variant, records: BuildRecords, compiler: Compiler) -> BuildRecord:
    """The cached build of this variant, or a fresh one."""
    key = cfg.key(variant)
    out = cfg.cache / "bin" / key
    rec = records.get(key)
    if rec is not None and Path(rec.path).is_file():
        return rec
    say(f"building llama-server, variant {variant.name} ({variant.about}), for {cfg.target.label}")
    t0 = time.monotonic()
    args = compiler(cfg, variant, cfg.cache / "build" / key)
    install_outputs(cfg, variant, cfg.cache / "build" / key, out)
    rec = BuildRecord(
        key=key,
        kind=KIND,
        path=str(out / "llama-server"),
        variant=variant.name,
        target=cfg.target.label,
        version=cfg.version,
        built_at=time.time(),
        build_s=round(time.monotonic() - t0, 1),
        args=[*args, *([f"CFLAGS={variant.cflags}"] if variant.cflags else [])],
    )
    records.put(rec)
    say(f"built {key} in {rec.build_s:.0f} s")
    return rec


def check_variant(cfg: BuildConfig, rec: BuildRecord, records: BuildRecords, fingerprint: str) -> SmokeResult:
    """Smoke-run a build on this machine (once: the result is kept per machine)."""
    known = rec.smoke_on(fingerprint)
    if known is not None:
        return known
    say(f"smoke run: {rec.key} loads {cfg.smoke_model.name if cfg.smoke_model else '?'} and decodes")
    result = smoke(cfg, Path(rec.path))
    folder = Path(rec.path).parent
    while not result.ok and (dropped := drop_trapping_cpu_variant(folder, result)):
        say(f"its CPU library '{dropped}' crashed ({result.detail[:120]}); dropped it, trying the next best")
        rec.args = [*rec.args, f"dropped CPU variant {dropped}"]
        records.put(rec)
        result = smoke(cfg, Path(rec.path))
    records.add_smoke(rec.key, fingerprint, result)
    return result


def ensure_llama_server(cfg: BuildConfig, *, compiler: Compiler = cmake_compile) -> BuildRecord:
    """The llama-server to use on this machine for ``cfg.target``, built and smoke-run if needed."""
    records = BuildRecords(cfg.cache)
    fingerprint = machine_fingerprint()
    variants = choose_variants(cfg.mode, platform.machine(), cpu_flags())
    with records.locked():
        if cfg.smoke_model is None:  # a compile check: build, never trust
            return build_variant(cfg, variants[0], records, compiler)
        chosen = records.chosen(fingerprint, KIND, cfg.target.label)
        if cfg.mode != "best" and chosen is not None and chosen.variant in {v.name for v in variants}:
            return chosen
        good: list[tuple[BuildRecord, SmokeResult]] = []
        failures: list[str] = []
        for i, variant in enumerate(variants):
            rec = build_variant(cfg, variant, records, compiler)
            result = check_variant(cfg, rec, records, fingerprint)
            if result.ok:
                say(f"{rec.key}: decoded {result.tokens} tokens at {result.tokens_per_s:.1f} tok/s")
                good.append((rec, result))
                if cfg.mode != "best":
                    break
                continue
            failures.append(f"{variant.name}: {result.detail}")
            nxt = variants[i + 1].name if i + 1 < len(variants) else ""
            say(
                f"{rec.key} does not run on this machine: {result.detail[:300]}"
                + (f"; falling back to the {nxt} variant" if nxt else "")
            )
        if not good:
            forced = cfg.mode not in ("auto", "best")
            raise BuildError(
                "no llama-server variant decodes on this machine:\n  "
                + "\n  ".join(failures)
                + (
                    f"\nthe variant was forced by ZOE_BUILD_VARIANT={cfg.mode}; unset it or use {SAFE_SWITCH}"
                    if forced
                    else "\nplease report this with the lines above"
                )
            )
        best = max(good, key=lambda g: g[1].tokens_per_s)[0] if cfg.mode == "best" else good[0][0]
        records.choose(fingerprint, KIND, cfg.target.label, best.key)
        if cfg.mode == "best" and len(good) > 1:
            say("kept the fastest: " + ", ".join(f"{r.variant} {s.tokens_per_s:.1f} tok/s" for r, s in good))
        return records.get(best.key) or best  # as recorded, with this machine's smoke result


def describe(rec: BuildRecord, fingerprint: str) -> str:
    result = rec.smoke_on(fingerprint)
    speed = f", smoke {result.tokens_per_s:.1f} tok/s" if result and result.ok else ""
    return f"{rec.variant} ({rec.target}{speed})"
