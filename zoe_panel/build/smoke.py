"""Smoke runs: load the demo model and decode tokens, the only proof that a binary works here.

``--version`` runs no kernel, so a binary that traps at the first matrix multiply passes it. A
smoke run starts the server on a free loopback port, waits for ``/health``, asks for tokens with
``ignore_eos`` (so a model that would stop early still decodes them all) and reads llama.cpp's own
timings. A crash (SIGILL = exit 132) is reported with the signal, for the fallback to act on.
"""

from __future__ import annotations

import json
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PROMPT = "The history of the lighthouse begins"
MIN_TOKENS = 8


@dataclass(frozen=True)
class SmokeResult:
    ok: bool
    tokens: int = 0
    tokens_per_s: float = 0.0  # decode speed, median over the runs (llama.cpp's timings)
    exit_code: int | None = None  # shell style: 128 + N when killed by signal N
    detail: str = ""
    cpu_backend: str = ""  # which CPU variant a runtime-dispatch build loaded
    runs: tuple[float, ...] = field(default=())

    @property
    def illegal_instruction(self) -> bool:
        return self.exit_code == 128 + signal.SIGILL

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["runs"] = list(self.runs)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SmokeResult:
        known = set(cls.__dataclass_fields__)
        clean = {k: v for k, v in data.items() if k in known}
        clean["runs"] = tuple(clean.get("runs") or ())
        return cls(**clean)


def describe_crash(code: int | None) -> str:
    if code is None:
        return "did not exit"
    if code > 128:
        try:
            name = signal.Signals(code - 128).name
        except ValueError:
            name = f"signal {code - 128}"
        extra = " (an instruction this CPU cannot run)" if code - 128 == signal.SIGILL else ""
        return f"exit code {code}, killed by {name}{extra}"
    return f"exit code {code}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http_json(url: str, body: dict[str, Any] | None = None, timeout_s: float = 5.0) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, {}


def wait_health(base_url: str, alive: Callable[[], bool], timeout_s: float) -> str:
    """'' once /health says 200; else why not ('exited', 'timeout')."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            return "exited"
        try:
            status, _ = _http_json(base_url + "/health", timeout_s=2.0)
            if status == 200:
                return ""
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    return "timeout"


def decode(base_url: str, n_predict: int, timeout_s: float = 120.0) -> tuple[int, float]:
    """(tokens decoded, decode tokens/s) for one /completion request."""
    _, data = _http_json(
        base_url + "/completion",
        {"prompt": PROMPT, "n_predict": n_predict, "temperature": 0, "ignore_eos": True, "cache_prompt": False},
        timeout_s=timeout_s,
    )
    timings = data.get("timings") or {}
    tokens = int(data.get("tokens_predicted") or timings.get("predicted_n") or 0)
    return tokens, float(timings.get("predicted_per_second") or 0.0)


def server_argv(binary: str, model: Path, port: int, *, gpu: bool, threads: int = 0) -> list[str]:
    argv = [binary, "-m", str(model), "-c", "512", "-np", "1", "--host", "127.0.0.1", "--port", str(port)]
    # -lv 4: the system_info line names the CPU features of the backend the build picked
    argv += ["-ngl", "999" if gpu else "0", "-b", "512", "-ub", "512", "-lv", "4"]
    if threads:
        argv += ["-t", str(threads)]
    return argv


def cpu_backend_of(log: str) -> str:
    """The CPU variant a runtime-dispatch build loaded, or ''. Older builds log 'load_backend:
    loaded CPU backend from .../libggml-cpu-haswell.so'; this one logs only the picked variant's
    features ('CPU : ... AMX_INT8 = 1 |') and an 'AMX model buffer': AMX is the sapphirerapids one."""
    for line in log.splitlines():
        if "loaded CPU backend from" in line:
            name = line.rsplit("/", 1)[-1].strip()
            return name.removeprefix("libggml-cpu-").removesuffix(".so")
    features = _cpu_features(log)
    for name, needs in _X86_PICKS:
        if needs <= features:
            return name if features else ""
    return ""


# What the picked variant's features say about its name (ggml/src/CMakeLists.txt), richest first.
_X86_PICKS: tuple[tuple[str, frozenset[str]], ...] = (
    ("sapphirerapids", frozenset({"AMX_INT8"})),
    ("zen4", frozenset({"AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16"})),
    ("cooperlake", frozenset({"AVX512_VNNI", "AVX512_BF16"})),
    ("icelake", frozenset({"AVX512_VBMI", "AVX512_VNNI"})),
    ("cascadelake", frozenset({"AVX512_VNNI"})),
    ("cannonlake", frozenset({"AVX512_VBMI"})),
    ("skylakex", frozenset({"AVX512"})),
    ("alderlake", frozenset({"AVX_VNNI"})),
    ("haswell", frozenset({"AVX2"})),
)


def _cpu_features(log: str) -> frozenset[str]:
    """The features of the CPU backend in use, from llama.cpp's system_info line ('CPU : AVX = 1 |')."""
    for line in log.splitlines():
        if "system_info" in line and "CPU :" in line:
            part = line.split("CPU :", 1)[1]
            return frozenset(k.strip() for k, _, v in (x.partition("=") for x in part.split("|")) if v.strip() == "1")
    return frozenset()


def smoke_server(
    binary: str,
    model: Path,
    *,
    gpu: bool = False,
    n_predict: int = 16,
    runs: int = 1,
    timeout_s: float = 180.0,
    threads: int = 0,
    wrap: Sequence[str] = (),
) -> SmokeResult:
    """Start ``binary`` (a llama-server) on the model and decode; never raises for a bad binary."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        try:
            proc = subprocess.Popen(
                [*wrap, *server_argv(binary, model, port, gpu=gpu, threads=threads)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        except OSError as e:
            return SmokeResult(False, detail=f"cannot run {binary}: {e}")
        try:
            return _smoke(proc, base, log, n_predict=n_predict, runs=runs, timeout_s=timeout_s)
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _smoke(
    proc: subprocess.Popen[bytes], base: str, log: Any, *, n_predict: int, runs: int, timeout_s: float
) -> SmokeResult:
    def tail() -> str:
        log.flush()
        log.seek(0)
        return str(log.read().decode("utf-8", "replace"))

    why = wait_health(base, lambda: proc.poll() is None, timeout_s)
    speeds: list[float] = []
    tokens = 0
    if not why:
        try:
            for _ in range(max(1, runs)):
                tokens, speed = decode(base, n_predict, timeout_s)
                speeds.append(speed)
        except (OSError, ValueError) as e:
            why = f"decode failed: {e}"
    if why:
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
    code = _exit_code(proc.poll())
    text = tail()
    backend = cpu_backend_of(text)
    if why or code is not None or tokens < MIN_TOKENS:
        detail = why or f"decoded {tokens} tokens, fewer than {MIN_TOKENS}"
        if code is not None:
            detail = f"{describe_crash(code)} ({detail})"
        last = " | ".join(text.strip().splitlines()[-4:])
        return SmokeResult(False, tokens, 0.0, code, f"{detail}; last log lines: {last}"[:1500], backend)
    return SmokeResult(True, tokens, statistics.median(speeds), None, "ok", backend, tuple(round(s, 2) for s in speeds))


def _exit_code(returncode: int | None) -> int | None:
    if returncode is None:
        return None
    return 128 - returncode if returncode < 0 else returncode


PYTHON_SMOKE = r"""
import json, sys, time
from llama_cpp import Llama
m = Llama(sys.argv[1], n_ctx=512, n_gpu_layers=int(sys.argv[3]), verbose=False)
tokens = m.tokenize(b"The history of the lighthouse begins")
n, t0 = 0, None
for tok in m.generate(tokens, temp=0.0):  # generate() never stops at EOS by itself
    if t0 is None:
        t0 = time.perf_counter()  # after the first token: prompt processing excluded
    n += 1
    if n >= int(sys.argv[2]):
        break
dt = time.perf_counter() - t0 if t0 else 0.0
print(json.dumps({"tokens": n, "tokens_per_s": (n - 1) / dt if dt > 0 else 0.0}))
"""


def smoke_python(
    python: str, model: Path, *, gpu: bool = False, n_predict: int = 16, timeout_s: float = 300.0
) -> SmokeResult:
    """Load the model with llama-cpp-python in a child interpreter and decode."""
    try:
        done = subprocess.run(
            [python, "-c", PYTHON_SMOKE, str(model), str(n_predict), "-1" if gpu else "0"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return SmokeResult(False, detail=f"no tokens within {timeout_s:.0f} s")
    except OSError as e:
        return SmokeResult(False, detail=f"cannot run {python}: {e}")
    code = _exit_code(done.returncode)
    if code != 0:
        last = " | ".join((done.stderr or done.stdout).strip().splitlines()[-4:])
        return SmokeResult(False, exit_code=code, detail=f"{describe_crash(code)}; {last}"[:1500])
    try:
        data = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return SmokeResult(False, detail=f"unexpected output: {done.stdout[-300:]}")
    tokens = int(data["tokens"])
    if tokens < MIN_TOKENS:
        return SmokeResult(False, tokens, detail=f"decoded {tokens} tokens, fewer than {MIN_TOKENS}")
    speed = round(float(data["tokens_per_s"]), 2)
    return SmokeResult(True, tokens, speed, None, "ok", runs=(speed,))


if __name__ == "__main__":  # python -m zoe_panel.build.smoke BINARY MODEL: a manual check
    print(json.dumps(smoke_server(sys.argv[1], Path(sys.argv[2]), n_predict=64, runs=3).to_json(), indent=1))
