"""GPU run (benchmark 7, and the NVML check of issue 3): the panel's own engine code on a CUDA
llama-server, on a synthetic model fully on the GPU.

Prints three tables and writes them (plus the 20 Hz load timelines) to --out:
  1. GPU memory: predicted by the estimator vs measured by NVML, per context, and KV predicted vs
     what llama.cpp reported, with llama.cpp's own --fit projection beside them;
  2. decode and prompt tokens/s: panel-started llama-server vs a hand-started one, interleaved
     requests, plus llama-bench as the raw ceiling of the binary;
  3. decode tokens/s against the HBM bandwidth roofline (datasheet and measured copy bandwidth).

Run on the device machine with bench/gpu_run.sh; ``--smoke`` runs the same code on a CPU box
(small model, host telemetry) so the script itself is tested before GPU time is spent.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zoe_panel.chat import ChatClient, ChatParams  # noqa: E402
from zoe_panel.engine.loadlog import load_summary  # noqa: E402
from zoe_panel.models.synth import SynthShape, read_tokenizer, write_synthetic  # noqa: E402

MIB = 1024 * 1024
PROMPT = "Write a detailed story about a lighthouse keeper who finds a map in a bottle."


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_model(dirpath: Path, tokenizer: Path, smoke: bool) -> tuple[Path, SynthShape]:
    if smoke:
        shape = SynthShape(n_layer=4, n_embd=256, n_head=8, n_head_kv=2, n_ff=512, n_ctx_train=32768, name="smoke")
    else:  # TinyLlama-1.1B's shape: 22 layers, 2048 wide, GQA 32:4, 2.05 GiB in F16
        shape = SynthShape(
            n_layer=22, n_embd=2048, n_head=32, n_head_kv=4, n_ff=5632, n_ctx_train=32768, name="synthetic-1.1b"
        )
    dirpath.mkdir(parents=True, exist_ok=True)
    path = dirpath / f"{shape.name}-f16.gguf"
    if not path.exists():
        t = time.monotonic()
        write_synthetic(path, shape, read_tokenizer(tokenizer), seed=7)
        took = time.monotonic() - t
        print(f"wrote {path.name}: {path.stat().st_size / MIB:.0f} MiB in {took:.0f} s", file=sys.stderr, flush=True)
    return path, shape


def memory_rows(rt: Any, model: str, contexts: list[int], out: Path) -> list[dict[str, Any]]:
    rows = []
    for ctx in contexts:
        spec = rt.default_spec(model, ctx=ctx, parallel=1, n_gpu_layers=999, flash_attn="on")
        est = rt.memory.estimate(spec, calibrated=False)
        time.sleep(1.0)
        base = rt.ring.latest()
        base_gpu = base.gpu_mem_used_bytes if base and base.gpu_mem_used_bytes is not None else 0
        t0 = time.time()
        rt.engine.start(spec)
        st = rt.engine.wait(240, on_poll=rt.recording())
        ready_s = time.time() - t0
        time.sleep(3.0)  # first allocations after READY, and a few more samples
        samples = rt.ring.snapshot(since=t0 - 0.5)
        events = rt.engine.load_events(3000)
        rt.engine.stop()
        peak_dev = max((s.gpu_mem_used_bytes or 0) for s in samples) - base_gpu
        peak_proc = max((s.engine_gpu_bytes or 0) for s in samples)
        peak_rss = max((s.engine_rss_bytes or 0) for s in samples)
        reported = load_summary(events)
        proj = [e.bytes for e in events if e.phase == "fit_projection" and e.bytes]
        kv_rep = sum(e.bytes or 0 for e in events if e.phase == "kv_cache")
        gpu_pred = est.gpu_bytes or est.total_bytes
        measured = peak_proc or peak_dev or peak_rss
        rows.append(
            {
                "ctx": ctx,
                "ready_s": round(ready_s, 2),
                "samples": len(samples),
                "hz": round(len(samples) / max(ready_s + 3.5, 1e-9), 1),
                "kv_pred_mib": round(est.kv_bytes / MIB, 2),
                "kv_llama_mib": round(kv_rep / MIB, 2),
                "weights_llama_mib": round(reported.get("model_buffer", 0) / MIB, 1),
                "compute_pred_mib": round(est.compute_bytes / MIB, 1),
                "compute_llama_mib": round(reported.get("compute_buffer", 0) / MIB, 1),
                "fit_projection_mib": round(max(proj) / MIB) if proj else None,
                "gpu_pred_mib": round(gpu_pred / MIB),
                "gpu_nvml_proc_mib": round(peak_proc / MIB),
                "gpu_nvml_device_delta_mib": round(peak_dev / MIB),
                "error_pct": round(100 * (measured - gpu_pred) / gpu_pred, 1) if measured else None,
                "state": st.state.value,
            }
        )
        with (out / f"load-timeline-ctx{ctx}.csv").open("w") as f:
            f.write("t_s,gpu_used_mib,engine_gpu_mib,engine_rss_mib\n")
            for s in samples:
                f.write(
                    f"{s.t - t0:.3f},{(s.gpu_mem_used_bytes or 0) / MIB:.0f},"
                    f"{(s.engine_gpu_bytes or 0) / MIB:.0f},{(s.engine_rss_bytes or 0) / MIB:.0f}\n"
                )
            for e in events:
                if e.bytes and e.phase in ("model_buffer", "kv_cache", "compute_buffer"):
                    f.write(f"# {e.t - t0:.3f} {e.label()}\n")
    return rows


def sweep_rows(rt: Any, model: str, configs: list[tuple[int, int, str, int]]) -> list[dict[str, Any]]:
    """The compute buffer and both memory pools across contexts, ubatches, flash attention and
    slots: what CUDA allocated (per device, from the log) and what NVML saw, against the estimate."""
    rows = []
    for ctx, ub, fa, np_ in configs:
        spec = rt.default_spec(model, ctx=ctx, ubatch=ub, flash_attn=fa, parallel=np_, n_gpu_layers=999)
        est = rt.memory.estimate(spec, calibrated=False)
        t0 = time.time()
        rt.engine.start(spec)
        st = rt.engine.wait(240, on_poll=rt.recording())
        time.sleep(1.5)
        pid = rt.engine.engine_pid()
        # this engine's samples only: the sampler may still carry the previous engine's reading
        samples = [s for s in rt.ring.snapshot(since=t0 + 0.3) if s.engine_rss_bytes]
        events = rt.engine.load_events(3000)
        rt.engine.stop()
        time.sleep(1.0)
        compute = [e for e in events if e.phase == "compute_buffer" and e.bytes]
        cuda = sum(e.bytes or 0 for e in compute if e.device.startswith("CUDA") and "Host" not in e.device)
        host = sum(e.bytes or 0 for e in compute if not (e.device.startswith("CUDA") and "Host" not in e.device))
        proc = max((s.engine_gpu_bytes or 0) for s in samples)
        rss = max((s.engine_rss_bytes or 0) for s in samples)
        pools = {p.name: p for p in est.pools()}
        host_ready = est.at_ready_bytes - est.gpu_bytes
        # the offloaded weights were read through the file mapping: page cache, reclaimable, in RSS
        host_measured = rss - est.weights_gpu_bytes
        rows.append(
            {
                "ctx": ctx,
                "ubatch": ub,
                "fa": fa,
                "slots": np_,
                "compute_pred_mib": round(est.compute_bytes / MIB, 1),
                "compute_cuda_mib": round(cuda / MIB, 1),
                "compute_host_mib": round(host / MIB, 1),
                "compute_err_pct": round(100 * (est.compute_bytes - cuda) / cuda, 1) if cuda else None,
                "gpu_pred_mib": round(est.gpu_bytes / MIB),
                "gpu_nvml_proc_mib": round(proc / MIB),
                "gpu_err_pct": round(100 * (est.gpu_bytes - proc) / proc, 1) if proc else None,
                "host_ready_pred_mib": round(host_ready / MIB),
                "rss_peak_mib": round(rss / MIB),
                "host_measured_mib": round(host_measured / MIB),
                "host_err_pct": round(100 * (host_ready - host_measured) / host_measured, 1)
                if host_measured > 0
                else None,
                "pid": pid,
                "memory_kind": est.budget.kind,
                "pools": " ".join(f"{p.name}:{p.verdict.value}" for p in pools.values()),
                "state": st.state.value,
            }
        )
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


def cli_estimate(model: str) -> dict[str, Any]:
    """The estimate as the CLI gives it (no sampler running): the memory kind must still be the
    hardware's (an H200 run once reported 'cpu' and compared a GPU KV cache with host memory)."""
    env = {k: v for k, v in os.environ.items() if k != "ZOE_TELEMETRY"}
    done = subprocess.run(
        [sys.executable, "-m", "zoe_panel", "estimate", model, "--ctx", "8192", "--json"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    try:
        data = json.loads(done.stdout)
    except ValueError:
        return {"error": (done.stderr or done.stdout)[-500:]}
    keep = ("memory_kind", "gpu_bytes", "host_bytes", "at_ready_bytes", "after_load_bytes", "verdict", "pools")
    return {k: data.get(k) for k in keep}


def raw_stream(base: str, max_tokens: int, seed: int) -> dict[str, Any]:
    """A plain httpx stream, no panel code: the baseline client."""
    body = {
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "stream": True,
        "temperature": 0.0,
        "seed": seed,
        "stream_options": {"include_usage": True},
    }
    timings: dict[str, Any] = {}
    t0 = time.perf_counter()
    first = None
    with httpx.stream("POST", base + "/v1/chat/completions", json=body, timeout=120) as r:
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            obj = json.loads(line[6:])
            if first is None and any((c.get("delta") or {}).get("content") for c in obj.get("choices") or []):
                first = time.perf_counter()
            timings = obj.get("timings") or timings
    return {
        "ttft_ms": (first - t0) * 1000 if first else None,
        "gen_tps": timings.get("predicted_per_second"),
        "prompt_tps": timings.get("prompt_per_second"),
    }


def throughput_rows(rt: Any, model: str, binary: str, pairs: int, max_tokens: int) -> list[dict[str, Any]]:
    spec = rt.default_spec(model, ctx=4096, parallel=1, n_gpu_layers=999, flash_attn="on")
    rt.engine.start(spec)
    rt.engine.wait(240, on_poll=rt.recording())
    port = free_port()
    # the hand-tuned engine: every layer on the GPU, flash attention, one slot, default batches
    raw = subprocess.Popen(
        [
            binary,
            "-m",
            spec.model,
            "-c",
            "4096",
            "-ngl",
            "999",
            "-fa",
            "on",
            "-np",
            "1",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base_raw = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            try:
                if httpx.get(base_raw + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        client: ChatClient = rt.chat_client()
        panel, rawr = [], []
        for i in range(pairs + 1):  # first pair is warm-up
            _, st = client.complete(
                [{"role": "user", "content": PROMPT}], ChatParams(max_tokens=max_tokens, temperature=0.0, seed=i)
            )
            r = raw_stream(base_raw, max_tokens, i)
            if i:
                panel.append(
                    {"gen_tps": st.gen_tokens_per_s, "prompt_tps": st.prompt_tokens_per_s, "ttft_ms": st.ttft_ms}
                )
                rawr.append(r)
    finally:
        raw.terminate()
        raw.wait(30)
        rt.engine.stop()

    def med(rows: list[dict[str, Any]], key: str) -> float:
        return statistics.median(float(r[key]) for r in rows if r[key] is not None)

    out = []
    for name, rows in (("panel-started llama-server", panel), ("hand-started llama-server", rawr)):
        out.append(
            {
                "engine": name,
                "gen_tps": round(med(rows, "gen_tps"), 1),
                "prompt_tps": round(med(rows, "prompt_tps"), 1),
                "ttft_ms": round(med(rows, "ttft_ms"), 1),
                "n": len(rows),
            }
        )
    out.append(
        {
            "engine": "ratio panel / hand",
            "gen_tps": round(out[0]["gen_tps"] / out[1]["gen_tps"], 4),
            "prompt_tps": round(out[0]["prompt_tps"] / out[1]["prompt_tps"], 4),
            "ttft_ms": None,
            "n": None,
        }
    )
    return out


def llama_bench(binary: str, model: str) -> dict[str, Any]:
    done = subprocess.run(
        [binary, "-m", model, "-ngl", "99", "-fa", "1", "-p", "512", "-n", "128", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    try:
        data = json.loads(done.stdout)
    except ValueError:
        return {"error": done.stderr[-500:]}
    return {("pp512" if r.get("n_prompt") else "tg128"): round(r.get("avg_ts", 0), 1) for r in data}


def copy_bandwidth_gbps() -> float | None:
    """Device-to-device copy through PyTorch, counting bytes read and written."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    a = torch.empty(2 * 1024**3, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(10):
        b.copy_(a)
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / 10
    del a, b
    torch.cuda.empty_cache()
    return 2 * 2 * 1024**3 / dt / 1e9


def datasheet_gbps(gpu_name: str) -> tuple[str, float]:
    """(device, GB/s) for the detected GPU from the panel's table; ('', 0) when unknown."""
    from zoe_panel.roofline import KNOWN_GBPS, device_name

    name = device_name(Path("/nonexistent"), gpu_name=gpu_name)
    return name, KNOWN_GBPS.get(name, 0.0)


def roofline_rows(
    machine: str, forced_gbps: float, copy_gbps: float | None, weights: int, thr: dict[str, Any], bench: dict[str, Any]
) -> list[dict[str, Any]]:
    """Ceilings for this model: the detected GPU's datasheet, its measured copy speed, and an Orin NX
    16 GB (what the same model could do at most on the board the panel is for)."""
    from zoe_panel.roofline import KNOWN_GBPS

    name, gbps = datasheet_gbps(machine.split(",")[0])
    lines = [
        (f"datasheet {name or 'unknown GPU'}", forced_gbps or gbps, True),
        ("measured copy", copy_gbps or 0.0, True),
        ("Jetson Orin NX 16GB datasheet (for comparison)", KNOWN_GBPS["Jetson Orin NX 16GB"], False),
    ]
    rows = []
    for label, bw, measured_here in lines:
        if not bw:
            continue
        ceiling = bw * 1e9 / weights
        rows.append(
            {
                "bandwidth": f"{label} {bw:.1f} GB/s",
                "ceiling_tok_s": round(ceiling, 1),
                "panel_tok_s": thr["gen_tps"] if measured_here else None,
                "pct_of_ceiling": round(100 * thr["gen_tps"] / ceiling, 1) if measured_here else None,
                "llama_bench_tg128": bench.get("tg128") if measured_here else None,
                "llama_bench_pp512": bench.get("pp512") if measured_here else None,
            }
        )
    return rows


def table(title: str, rows: list[dict[str, Any]]) -> str:
    if not rows:
        return f"### {title}\n(no rows)\n"
    cols = list(rows[0])
    lines = [f"### {title}", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join("" if r[c] is None else str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--llama-server")
    p.add_argument("--llama-bench")
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--smoke", action="store_true", help="tiny model, CPU, few requests: test the script")
    p.add_argument("--make-smoke-model", action="store_true", help="write the tiny model, print its path, exit")
    p.add_argument("--sweep", action="store_true", help="the compute-buffer and memory-pool sweep")
    p.add_argument("--skip-throughput", action="store_true", help="memory tables only")
    p.add_argument(
        "--hbm-gbps",
        type=float,
        default=0.0,
        help="datasheet bandwidth in GB/s; 0 = the detected GPU's, from the table",
    )
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    home = Path(os.environ.get("ZOE_BENCH_HOME", "/tmp/zoe-gpu-bench"))
    (home / "models").mkdir(parents=True, exist_ok=True)
    if args.make_smoke_model:  # what the build's smoke run decodes on the GPU machine
        print(make_model(home / "smoke", Path(args.tokenizer), True)[0])
        return 0
    model_path, shape = make_model(home / "models", Path(args.tokenizer), args.smoke)
    os.environ.update(
        {
            "ZOE_HOME": str(home),
            "ZOE_LLAMA_SERVER": args.llama_server,
            "ZOE_ENGINE_PORT": str(free_port()),
            "ZOE_SAMPLE_HZ_LOADING": "20",
            "ZOE_TELEMETRY": "host" if args.smoke else "nvml",
        }
    )
    from zoe_panel.runtime import Runtime
    from zoe_panel.settings import load_settings

    rt = Runtime(load_settings(), sampler=True)

    rt.start_background()
    try:
        machine = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        machine = "no NVIDIA GPU (smoke run on the CPU)"
    report = [
        f"## GPU run: {machine}",
        f"model: {model_path.name} ({model_path.stat().st_size / MIB:.0f} MiB, "
        f"{shape.n_layer} layers, {shape.n_embd} wide, KV heads {shape.n_head_kv}), date "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
    ]
    mem = memory_rows(rt, model_path.name, [4096] if args.smoke else [4096, 32768], out)
    report.append(table("1. GPU memory: predicted vs NVML, KV predicted vs llama.cpp", mem))
    thr: list[dict[str, Any]] = []
    bench: dict[str, Any] = {}
    roof: list[dict[str, Any]] = []
    if not args.skip_throughput:
        thr = throughput_rows(
            rt, model_path.name, args.llama_server, 3 if args.smoke else 10, 32 if args.smoke else 256
        )
        report.append(table("2. Panel-started vs hand-started llama-server (median, interleaved)", thr))
        bench = llama_bench(args.llama_bench, str(model_path)) if args.llama_bench else {}
        roof = roofline_rows(machine, args.hbm_gbps, copy_bandwidth_gbps(), model_path.stat().st_size, thr[0], bench)
        report.append(table("3. Decode tokens/s vs the memory-bandwidth roofline (bytes/token ≈ weights)", roof))
    sweep: list[dict[str, Any]] = []
    cli: dict[str, Any] = {}
    if args.sweep:
        configs = [(2048, 512, "on", 1)]
        if not args.smoke:
            configs = [(c, u, f, 1) for c in (2048, 8192, 32768) for u in (256, 512, 1024) for f in ("on", "off")]
            configs += [(8192, 512, "on", 4), (8192, 512, "off", 4)]
        sweep = sweep_rows(rt, model_path.name, configs)
        report.append(table("4. Compute buffer and memory pools: predicted vs CUDA's log and NVML", sweep))
        cli = cli_estimate(model_path.name)
        report.append(f"CLI estimate (no sampler): {json.dumps(cli)}\n")
    text = "\n".join(report)
    print(text, flush=True)
    (out / "gpu-bench.md").write_text(text)
    (out / "gpu-bench.json").write_text(
        json.dumps(
            {
                "machine": machine,
                "memory": mem,
                "throughput": thr,
                "llama_bench": bench,
                "roofline": roof,
                "sweep": sweep,
                "cli_estimate": cli,
            },
            indent=1,
        )
    )
    rt.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
