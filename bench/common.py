"""Shared pieces of the benchmarks: a scratch panel home with the real models, tables, statistics."""

from __future__ import annotations

import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)  # Streamlit reads .streamlit/config.toml from the working directory

from zoe_panel.models import demo  # noqa: E402
from zoe_panel.runtime import Runtime  # noqa: E402
from zoe_panel.settings import load_settings  # noqa: E402

SMOL = demo.SMOLLM2.filename
GEMMA = demo.GEMMA3_270M.filename
MIB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scratch_runtime(*, sampler: bool = False, **env: str) -> Runtime:
    """A Runtime in a fresh temporary home, with SmolLM2 and Gemma-3 hard-linked in."""
    home = Path(tempfile.mkdtemp(prefix="zoe-bench-"))
    cache = load_settings().cache_dir
    (home / "models").mkdir()
    for m in (demo.SMOLLM2, demo.GEMMA3_270M):
        src = demo.cached_model(m, cache)
        try:
            os.link(src, home / "models" / m.filename)
        except OSError:
            shutil.copyfile(src, home / "models" / m.filename)
    values = {"ZOE_HOME": str(home), "ZOE_ENGINE_PORT": str(free_port()), "ZOE_CACHE": str(cache), **env}
    rt = Runtime(load_settings({**os.environ, **values}), sampler=sampler)
    rt.start_background()
    return rt


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def p90(xs: list[float]) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(0.9 * (len(s) - 1))))]


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: Any) -> None:
        self.rows.append(list(cells))

    def markdown(self) -> str:
        def fmt(v: Any) -> str:
            if isinstance(v, float):
                return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
            return "" if v is None else str(v)

        lines = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(fmt(c) for c in r) + " |" for r in self.rows]
        lines += [f"\n{n}" for n in self.notes]
        return "\n".join(lines) + "\n"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    llama = ""
    try:
        from zoe_panel.engine.binary import capabilities, find_llama_server

        s = load_settings()
        caps = capabilities(find_llama_server(s), s.state_dir / "binaries.json")
        llama = f"llama.cpp {caps.version} (commit {caps.commit})"
    except Exception:
        llama = "llama-server not found"
    import streamlit

    return (
        f"{cpu}, {os.cpu_count()} cores, {mem:.1f} GiB RAM, Linux {platform.release()}, Python "
        f"{platform.python_version()}, Streamlit {streamlit.__version__}, {llama}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )


def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)


# -- a real panel process and a real browser (benches 17, 19, 20) -----------------------------------
def cpu_seconds(procs: list[Any]) -> float:
    """User + system CPU seconds of these psutil processes (the ones gone meanwhile count 0)."""
    import psutil

    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def tree_cpu(proc: Any) -> float:
    return cpu_seconds([proc, *proc.children(recursive=True)])


def chromium_cpu() -> float:
    import psutil

    return cpu_seconds([p for p in psutil.process_iter(["name"]) if p.info["name"] and "chrom" in p.info["name"]])


def serve_panel(home: Path, engine_port: int, **env: str) -> tuple[subprocess.Popen[bytes], str]:
    """The panel (Streamlit) on a free port over this home; its own session, so killpg stops it all."""
    import httpx

    port = free_port()
    full = {**os.environ, "ZOE_HOME": str(home), "ZOE_ENGINE_PORT": str(engine_port), "ZOE_EXPORTER_PORT": "0", **env}
    proc = subprocess.Popen(
        [sys.executable, "-m", "zoe_panel.web", "--server.port", str(port), "--server.headless", "true"],
        cwd=ROOT, env=full, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            # warmed up (/zoe/ready 200); a panel from before that route answers 404: up is enough
            if httpx.get(url + "/zoe/ready", timeout=1).status_code in (200, 404):
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the panel did not come up")


def stop_panel(proc: subprocess.Popen[bytes]) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def chromium(pw: Any) -> Any:
    return pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
