"""A build is trusted only after it decoded: the fallback, proved with stand-in binaries.

The compile step is replaced (compiling takes minutes); everything after it is the real code: the
smoke run starts the "binary", waits for /health and decodes; a stand-in that kills itself with
SIGILL plays the build that traps (as ggml's AMX kernels do on some VMs), and a wrapper that execs
the real llama-server plays a build that works, so the good path really decodes the demo model.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CACHE, require_llama_server

from zoe_panel.build import server as build_server
from zoe_panel.build.records import BuildRecords
from zoe_panel.build.server import BuildConfig, BuildError, ensure_llama_server
from zoe_panel.build.smoke import smoke_python, smoke_server
from zoe_panel.build.variants import VARIANTS, Target, Variant
from zoe_panel.engine.binary import find_llama_server
from zoe_panel.settings import Settings

pytestmark = pytest.mark.integration

SIGILL_STANDIN = (
    "#!/bin/sh\necho 'load_backend: loaded CPU backend from ./libggml-cpu-sapphirerapids.so'\nkill -ILL $$\n"
)


def _script(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


class FakeCompiler:
    """Writes a stand-in 'build' per variant: crashing ones as named, the rest exec the real server."""

    def __init__(self, real: str, crashing: set[str]) -> None:
        self.real = real
        self.crashing = crashing
        self.calls: list[str] = []

    def __call__(self, cfg: BuildConfig, variant: Variant, build_dir: Path) -> list[str]:
        self.calls.append(variant.name)
        text = SIGILL_STANDIN if variant.name in self.crashing else f'#!/bin/sh\nexec "{self.real}" "$@"\n'
        _script(build_dir / "bin" / "llama-server", text)
        return [f"fake {variant.name}"]


@pytest.fixture
def real_server(settings_with_model: Settings) -> str:
    require_llama_server(settings_with_model)
    return find_llama_server(settings_with_model)


@pytest.fixture
def cfg(tmp_path: Path, smollm2: Path) -> BuildConfig:
    return BuildConfig(cache=tmp_path / "cache", target=Target("cpu"), smoke_model=smollm2, jobs=1)


def test_a_build_that_traps_is_noticed_and_the_safe_variant_built_instead(
    cfg: BuildConfig, real_server: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(build_server, "cpu_flags", lambda: frozenset({"avx2", "amx_tile", "amx_int8"}))
    monkeypatch.setattr(build_server.platform, "machine", lambda: "x86_64")
    compiler = FakeCompiler(real_server, crashing={"native-noamx"})
    rec = ensure_llama_server(cfg, compiler=compiler)
    assert rec.variant == "portable" and rec.key.endswith("-cpu-portable")
    console = capsys.readouterr().err
    assert "native-noamx does not run on this machine" in console and "SIGILL" in console
    assert "falling back to the portable variant" in console
    records = BuildRecords(cfg.cache)
    bad = records.get(cfg.key(VARIANTS["native-noamx"]))
    smoke = bad.smoke_on(build_server.machine_fingerprint())  # type: ignore[union-attr]
    assert smoke is not None and smoke.illegal_instruction and smoke.exit_code == 132
    good = rec.smoke_on(build_server.machine_fingerprint())
    assert good is not None and good.ok and good.tokens >= 8 and good.tokens_per_s > 0
    # The choice is remembered: a second set-up neither compiles nor smoke-runs anything.
    assert ensure_llama_server(cfg, compiler=compiler).key == rec.key
    assert compiler.calls == ["native-noamx", "portable"]
    # The panel then runs that build (ZOE_LLAMA_SERVER and PATH aside).
    settings = Settings(home=cfg.cache.parent / "home", cache_dir=cfg.cache)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert find_llama_server(settings) == rec.path


def test_when_every_variant_traps_the_build_fails_clearly(cfg: BuildConfig, real_server: str) -> None:
    compiler = FakeCompiler(real_server, crashing={"native", "native-noamx", "portable"})
    with pytest.raises(BuildError) as e:
        ensure_llama_server(cfg, compiler=compiler)
    text = str(e.value)
    assert "no llama-server variant decodes on this machine" in text
    assert text.count("SIGILL") == 2  # both variants, each with its signal
    forced = BuildConfig(cache=cfg.cache, target=cfg.target, smoke_model=cfg.smoke_model, mode="native")
    with pytest.raises(BuildError, match="forced by ZOE_BUILD_VARIANT=native"):
        ensure_llama_server(forced, compiler=compiler)


def test_a_cached_build_new_to_this_machine_is_smoke_run_again(
    cfg: BuildConfig, real_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiler = FakeCompiler(real_server, crashing=set())
    first = ensure_llama_server(cfg, compiler=compiler)
    smokes: list[str] = []
    real_smoke = build_server.smoke

    def counting(c: BuildConfig, binary: Path):  # type: ignore[no-untyped-def]
        smokes.append(str(binary))
        return real_smoke(c, binary)

    monkeypatch.setattr(build_server, "smoke", counting)
    monkeypatch.setattr(build_server, "machine_fingerprint", lambda: "another-machine")
    again = ensure_llama_server(cfg, compiler=compiler)
    assert again.key == first.key and len(compiler.calls) == 1  # no rebuild: the cache hit
    assert smokes == [first.path]  # but a smoke run on the new machine
    assert again.smoke_on("another-machine").ok  # type: ignore[union-attr]


def test_a_dispatching_build_drops_the_cpu_library_that_traps(
    cfg: BuildConfig, real_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The runtime-dispatch build picks the AMX library on such a VM; once dropped, it runs."""

    def compiler(c: BuildConfig, variant: Variant, build_dir: Path) -> list[str]:
        bindir = build_dir / "bin"
        (bindir).mkdir(parents=True, exist_ok=True)
        (bindir / "libggml-cpu-sapphirerapids.so").write_text("")
        (bindir / "libggml-cpu-icelake.so").write_text("")
        _script(
            bindir / "llama-server",
            '#!/bin/sh\nd=$(dirname "$0")\nif [ -e "$d/libggml-cpu-sapphirerapids.so" ]; then\n'
            '  echo "load_backend: loaded CPU backend from $d/libggml-cpu-sapphirerapids.so"; kill -ILL $$\nfi\n'
            f'exec "{real_server}" "$@"\n',
        )
        return []

    forced = BuildConfig(cache=cfg.cache, target=cfg.target, smoke_model=cfg.smoke_model, mode="portable")
    rec = ensure_llama_server(forced, compiler=compiler)
    folder = Path(rec.path).parent
    assert not (folder / "libggml-cpu-sapphirerapids.so").exists()
    assert (folder / "dropped" / "libggml-cpu-sapphirerapids.so").exists()
    assert (folder / "libggml-cpu-icelake.so").exists()
    assert "dropped CPU variant sapphirerapids" in rec.args
    assert "its CPU library 'sapphirerapids' crashed" in capsys.readouterr().err


def test_smoke_runs_see_the_trap_where_version_would_not(tmp_path: Path, smollm2: Path) -> None:
    standin = _script(tmp_path / "llama-server", SIGILL_STANDIN)
    result = smoke_server(str(standin), smollm2, timeout_s=20)
    assert not result.ok and result.illegal_instruction
    assert "SIGILL" in result.detail and "cannot run" in result.detail
    fake_python = _script(tmp_path / "python", "#!/bin/sh\nkill -ILL $$\n")
    py = smoke_python(str(fake_python), smollm2)
    assert not py.ok and py.illegal_instruction


def test_the_installed_llama_cpp_python_decodes_here(smollm2: Path) -> None:
    """The wheel set-up installed (the panel's own, checked at install) decodes in a child process."""
    result = smoke_python(sys.executable, smollm2, n_predict=16)
    assert result.ok, result.detail
    assert result.tokens == 16 and result.tokens_per_s > 0


def test_make_llama_server_on_a_cache_hit_prints_the_checked_binary(settings_with_model: Settings) -> None:
    """scripts/build_llama_server.sh, as `make llama-server` runs it: no rebuild, the chosen path."""
    require_llama_server(settings_with_model)
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "ZOE_CACHE": str(CACHE)}
    env.pop("ZOE_BUILD_VARIANT", None)
    done = subprocess.run(
        [str(root / "scripts/build_llama_server.sh")], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    path = done.stdout.strip().splitlines()[-1]
    assert Path(path).is_file() and "compiling" not in done.stderr
    status = subprocess.run(
        [sys.executable, "-m", "zoe_panel.build", "status", "--json"], capture_output=True, text=True, env=env
    )
    assert '"chosen_here": true' in status.stdout.replace('"chosen_here":true', '"chosen_here": true')
