"""``python -m zoe_panel.build``: the engine builds, checked by a smoke decode on this machine.

    llama-server      build (or reuse) llama-server + rpc-server; prints the binary's path last
    llama-cpp-python  build, install into --python's venv and check llama-cpp-python
    status            what was built and chosen here

Exit codes: 0 ok, 1 the build or every variant's smoke run failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from zoe_panel.build.records import BuildRecords
from zoe_panel.build.server import BuildConfig, BuildError, describe, ensure_llama_server
from zoe_panel.build.variants import detect_target, machine_fingerprint


def default_cache() -> Path:
    if os.environ.get("ZOE_CACHE"):
        return Path(os.environ["ZOE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "zoe-panel"


def demo_model(cache: Path) -> Path:
    from zoe_panel.models import demo

    return demo.cached_model(demo.SMOLLM2, cache)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m zoe_panel.build", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("llama-server")
    s.add_argument("--variant", default=os.environ.get("ZOE_BUILD_VARIANT", "auto"))
    s.add_argument("--source", type=Path, help="a llama.cpp source tree (default: the sdist's vendored one)")
    s.add_argument("--model", type=Path, help="the model the smoke run decodes (default: SmolLM2 from PyPI)")
    s.add_argument("--no-smoke", action="store_true", help="compile only (a compile check; never trusted)")
    s.add_argument("--extra-target", action="append", default=[], help="another CMake target, e.g. llama-bench")
    s.add_argument("--jobs", type=int, default=int(os.environ.get("ZOE_BUILD_JOBS", "0") or 0))
    s.add_argument("--json", action="store_true")
    s = sub.add_parser("llama-cpp-python")
    s.add_argument("--python", required=True, help="the venv's python to install into")
    s.add_argument("--variant", default=os.environ.get("ZOE_BUILD_VARIANT", "auto"))
    s.add_argument("--model", type=Path)
    s.add_argument("--jobs", type=int, default=int(os.environ.get("ZOE_BUILD_JOBS", "0") or 0))
    s = sub.add_parser("status")
    s.add_argument("--json", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cache = default_cache()
    try:
        target = detect_target(os.environ)
        if args.what == "status":
            return _status(cache, args.json)
        if args.what == "llama-cpp-python":
            from zoe_panel.build.wheel import ensure_llama_cpp_python

            model = args.model or demo_model(cache)
            rec = ensure_llama_cpp_python(args.python, cache, model, target=target, mode=args.variant, jobs=args.jobs)
            print(f"llama-cpp-python {rec.version}: {describe(rec, machine_fingerprint())}")
            return 0
        cfg = BuildConfig(
            cache=cache,
            target=target,
            mode=args.variant,
            source=args.source,
            jobs=args.jobs or os.cpu_count() or 2,
            smoke_model=None if args.no_smoke else (args.model or demo_model(cache)),
            extra_targets=tuple(args.extra_target),
        )
        rec = ensure_llama_server(cfg)
    except (BuildError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({**rec.to_json(), "chosen_for_this_machine": describe(rec, machine_fingerprint())}))
    print(rec.path)
    return 0


def _status(cache: Path, as_json: bool) -> int:
    fp = machine_fingerprint()
    records = BuildRecords(cache)
    rows: list[dict[str, Any]] = []
    for rec in records.all():
        smoke = rec.smoke_on(fp)
        chosen = records.chosen(fp, rec.kind, rec.target)
        rows.append(
            {
                "key": rec.key,
                "kind": rec.kind,
                "variant": rec.variant,
                "target": rec.target,
                "build_s": rec.build_s,
                "smoke_here": smoke.to_json() if smoke else None,
                "chosen_here": chosen is not None and chosen.key == rec.key,
            }
        )
    if as_json:
        print(json.dumps({"machine": fp, "builds": rows}, indent=1))
        return 0
    print(f"machine {fp}")
    for r in rows:
        ran: dict[str, Any] | None = r["smoke_here"]
        state = "not run here" if ran is None else (f"ok {ran['tokens_per_s']:.1f} tok/s" if ran["ok"] else "CRASHES")
        print(f"  {'*' if r['chosen_here'] else ' '} {r['key']:<52} {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
