"""Benchmark 11: the engine build variants on this machine. Decode tok/s of the demo model for every
llama-server build in the cache (smoke decode, llama.cpp's own timings, median of several runs),
against the variant chosen here as the baseline, and whether each runs at all (a build whose
instructions trap is listed as crashing). The llama-cpp-python wheel installed in this venv too."""

from __future__ import annotations

import sys
from pathlib import Path

from common import Table

from zoe_panel.build.__main__ import default_cache, demo_model
from zoe_panel.build.records import BuildRecords
from zoe_panel.build.smoke import smoke_python, smoke_server
from zoe_panel.build.variants import machine_fingerprint


def main(smoke: bool = False) -> Table:
    cache = default_cache()
    model = demo_model(cache)
    fp = machine_fingerprint()
    records = BuildRecords(cache)
    chosen = records.chosen(fp, "llama-server")
    runs, n = (1, 16) if smoke else (5, 128)
    t = Table(
        "11. Engine build variants on this machine (SmolLM2-135M Q4_1 decode, llama.cpp timings)",
        ["build", "variant", "build time (s)", "runs here", "decode tok/s (median)", "CPU library picked", "ratio"],
    )
    rows = []
    for rec in sorted(records.all(), key=lambda r: r.key):
        if rec.kind != "llama-server" or not Path(rec.path).exists():
            continue
        r = smoke_server(rec.path, model, n_predict=n, runs=runs)
        rows.append((rec, r))
    base = next((r.tokens_per_s for rec, r in rows if chosen and rec.key == chosen.key and r.ok), 0.0)
    for rec, r in rows:
        mark = " (chosen here)" if chosen and rec.key == chosen.key else ""
        t.add(
            rec.key + mark,
            rec.variant,
            rec.build_s,
            "yes" if r.ok else f"no: {r.detail[:60]}",
            round(r.tokens_per_s, 1) if r.ok else None,
            (r.cpu_backend or "?") if rec.variant == "portable" else "(one, compiled in)",
            round(r.tokens_per_s / base, 3) if r.ok and base else None,
        )
    py = smoke_python(sys.executable, model, n_predict=n)
    t.add(
        "llama-cpp-python in this venv",
        "",
        None,
        "yes" if py.ok else f"no: {py.detail[:60]}",
        round(py.tokens_per_s, 1) if py.ok else None,
        "(static)",
        round(py.tokens_per_s / base, 3) if py.ok and base else None,
    )
    t.notes.append("ratio: decode tok/s against the build chosen on this machine (the baseline, 1.0).")
    return t


if __name__ == "__main__":
    print(main(smoke="--smoke" in sys.argv).markdown())
