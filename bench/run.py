"""Run the benchmarks: each prints a table with its baseline and ratio; BENCHMARKS.md gets them all.

    python bench/run.py [--smoke] [--only 1,3] [--out BENCHMARKS.md]

--smoke: a few iterations each (CI runs it to keep the benchmarks working; no numbers are judged).
The GPU benchmark (7) runs on an NVIDIA machine with bench/gpu_run.sh; its last result is kept in
bench/results/h100/ and included here.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine

BENCHES = {
    1: "b1_chat_overhead",
    2: "b2_default_vs_tuned",
    3: "b3_readiness",
    4: "b4_sampler",
    5: "b5_footprint",
    6: "b6_estimator",
    8: "b8_library",
    9: "b9_suite",
    10: "b10_hostile_gguf",
    11: "b11_build_variants",
    12: "b12_after_load",
    13: "b13_remote_header",
    14: "b14_convert",
    15: "b15_rpc",
    16: "b16_lab",
    17: "b17_panel_cost",
    18: "b18_monitor_chart",
    19: "b19_first_paint",
    20: "b20_idle",
}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--only", default="")
    p.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    args = p.parse_args()
    chosen = [int(x) for x in args.only.split(",") if x] or list(BENCHES)
    parts = [
        "# Benchmarks",
        "",
        f"Machine: {machine()}",
        "",
        "Every table has a baseline measured in the same run; ratios are ours / baseline. "
        + ("SMOKE RUN: few iterations, numbers not meaningful." if args.smoke else ""),
        "",
    ]
    failed = 0
    for n in chosen:
        t0 = time.monotonic()
        try:
            table = importlib.import_module(BENCHES[n]).main(smoke=args.smoke)
            text = table.markdown() + f"\n_{time.monotonic() - t0:.0f} s_\n"
        except Exception:
            failed += 1
            text = f"### {n}. {BENCHES[n]} FAILED\n\n```\n{traceback.format_exc()[-2000:]}\n```\n"
        print(text, flush=True)
        parts.append(text)
    gpu_runs = [
        ("h200/gpu-bench.md", "7. NVIDIA H200 (bench/gpu_run.sh on the device machine; last full run)"),
        (
            "h200/memory-pools.md",
            "7b. NVIDIA H200: the estimate per memory pool over 20 configurations (ZOE_GPU_SWEEP=1 bench/gpu_run.sh; "
            "raw output in bench/results/h200/gpu-sweep.md). Host measured = RSS minus the offloaded weights' "
            "file pages, plus the pinned inputs llama.cpp logs as its CUDA_Host compute buffer (pinned pages are "
            "not in RSS)",
        ),
        ("h100/gpu-bench.md", "7c. NVIDIA H100 (an earlier run)"),
        ("rpc-paper.md", "15b. On paper: an 8B Q4_K_M model over two Orin NX 16 GB boards on 1 GbE"),
    ]
    for rel, title in gpu_runs:
        gpu = ROOT / "bench/results" / rel
        if gpu.exists() and not args.only:
            body = gpu.read_text().replace("## GPU run", "GPU").replace("### ", "#### ")
            parts += [f"## {title}", "", body, ""]
    Path(args.out).write_text("\n".join(parts))
    print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
