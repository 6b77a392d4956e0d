"""Engine page pieces: spec from the form, and the live state + log block."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import streamlit as st

from zoe_panel.engine import defaults, flavors
from zoe_panel.engine.base import EngineState, EngineStatus
from zoe_panel.engine.logfile import parse_stamped
from zoe_panel.models.fit import Verdict
from zoe_panel.runtime import Runtime
from zoe_panel.ui.widgets import md, state_line


def init_form(rt: Runtime, names: list[str]) -> None:
    """First render of a tab: the model and flavour the URL names (a reload is a new session: the
    URL keeps the operator's choice), else the first model; its preset; the panel's settings."""
    state = st.session_state
    wanted = st.query_params.get("flavor")
    if "engine-flavor" not in state and wanted in flavors.names():
        state["engine-flavor"] = wanted
    state.setdefault("engine-flavor", rt.settings.flavor)
    state.setdefault("engine-port", rt.settings.engine_port)
    state.setdefault("engine-extra", "")
    if names and state.get("engine-model") not in names:
        model = st.query_params.get("model")
        state["engine-model"] = model if model in names else names[0]
        apply_preset(rt)
    for key, value in (
        ("engine-ctx", defaults.CTX),
        ("engine-ngl", defaults.N_GPU_LAYERS),
        ("engine-cache-type", defaults.CACHE_TYPE),
        ("engine-parallel", defaults.PARALLEL),
        ("engine-threads", 0),
        ("engine-flash-attn", defaults.FLASH_ATTN),
        ("engine-cache-ram", rt.settings.cache_ram_mib),
        ("engine-checkpoints", rt.settings.ctx_checkpoints),
    ):
        state.setdefault(key, value)


def remember_choice() -> None:
    """The chosen model and flavour in the page's URL, so a reload (a new session) keeps them."""
    state = st.session_state
    for key, param in (("engine-model", "model"), ("engine-flavor", "flavor")):
        if state.get(key):
            st.query_params[param] = str(state[key])


def apply_preset(rt: Runtime) -> None:
    """The selected model's saved preset, or the largest context that fits."""
    from zoe_panel.errors import ZoePanelError

    state = st.session_state
    try:
        p = rt.preset_for(str(state["engine-model"]))
    except ZoePanelError as e:
        state["engine-preset-note"] = f"no preset: {e}"
        return
    state.update(
        {
            "engine-ctx": p.ctx,
            "engine-ngl": p.n_gpu_layers,
            "engine-cache-type": p.cache_type_k,
            "engine-parallel": p.parallel,
            "engine-threads": p.threads,
            "engine-flash-attn": p.flash_attn,
            "engine-extra": " ".join(p.extra_args),
            "engine-spec-mode": SPEC_DRAFT if p.draft_model else (p.spec_type or SPEC_NONE),
            "engine-draft-model": p.draft_model,
            "engine-draft-max": p.draft_max,
        }
    )
    state["engine-preset-note"] = (
        "settings from this model's saved preset"
        if p.saved
        else f"default preset: the largest context that fits here ({p.ctx:,} tokens)"
    )
    if str(state["engine-model"]).endswith(".hf") and flavors.get(str(state.get("engine-flavor"))).name != "vllm":
        state["engine-flavor"] = "vllm"  # a Hugging Face folder: only vLLM serves it
        state["engine-preset-note"] = f"a Hugging Face folder: vLLM serves it (context {p.ctx:,} to start with)"
    remember_choice()


def save_preset(rt: Runtime, form: Mapping[str, Any]) -> None:
    from zoe_panel.models.presets import Preset

    o = spec_overrides(form)
    preset = Preset(
        ctx=o["ctx"],
        n_gpu_layers=o["n_gpu_layers"],
        cache_type_k=o["cache_type_k"],
        cache_type_v=o["cache_type_v"],
        flash_attn=o["flash_attn"],
        parallel=o["parallel"],
        threads=o["threads"],
        extra_args=o["extra_args"],
        spec_type=o.get("spec_type", ""),
        draft_model=o.get("draft_model", ""),
        draft_max=o.get("draft_max", 0),
    )
    rt.presets.save(str(form["engine-model"]), preset)


def spec_overrides(form: Mapping[str, Any]) -> dict[str, Any]:
    """Widget values (by key) -> EngineSpec fields."""
    import shlex

    from zoe_panel.errors import ConfigError

    flavor = str(form.get("engine-flavor", defaults.FLAVOR))
    cache = str(form.get("engine-cache-type", defaults.CACHE_TYPE))
    try:
        extra = flavors.get(flavor).check_extra(shlex.split(str(form.get("engine-extra", "") or "")))
    except ValueError as e:
        raise ConfigError(f"extra arguments: {e}") from None
    out: dict[str, Any] = {}
    cache_ram = int(form.get("engine-cache-ram", -1))
    if cache_ram >= 0:  # -1: the runtime sizes it from available memory
        out["cache_ram_mib"] = cache_ram
    if "engine-checkpoints" in form:
        out["ctx_checkpoints"] = int(form["engine-checkpoints"])
    out |= speculative_overrides(form)
    if "engine-kv-space" in form:
        out["kv_space_mib"] = int(form["engine-kv-space"])
    return out | {
        "extra_args": extra,
        "ctx": int(form.get("engine-ctx", defaults.CTX)),
        "n_gpu_layers": int(form.get("engine-ngl", defaults.N_GPU_LAYERS)),
        "cache_type_k": cache,
        "cache_type_v": cache,
        "parallel": int(form.get("engine-parallel", defaults.PARALLEL)),  # the flavour decides if slots exist
        "flavor": flavor,
        "port": int(form.get("engine-port", defaults.PORT)),
        "threads": int(form.get("engine-threads", 0)),
        "flash_attn": str(form.get("engine-flash-attn", defaults.FLASH_ATTN)),
    }


def split_form(form: Mapping[str, Any]) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The RPC fields: workers, shares (one per worker, then this machine) and free memory by hand."""
    from zoe_panel.models.split import parse_shares
    from zoe_panel.workers.probe import parse_endpoints, parse_worker_free

    rpc = parse_endpoints(str(form.get("engine-rpc", "") or ""))
    if not rpc:
        return (), {}
    ts = str(form.get("engine-ts", "") or "").strip()
    shares = parse_shares(ts, len(rpc) + 1) if ts else None
    free = parse_worker_free(str(form.get("engine-worker-free", "") or "").split(","))
    return rpc, {"shares": shares, "worker_free": free}


SPEC_NONE = "off"
SPEC_DRAFT = "draft model"


def speculative_overrides(form: Mapping[str, Any]) -> dict[str, Any]:
    mode = str(form.get("engine-spec-mode", SPEC_NONE) or SPEC_NONE)
    if mode == SPEC_NONE:
        return {"spec_type": "", "draft_model": "", "draft_max": 0}
    out: dict[str, Any] = {"draft_max": int(form.get("engine-draft-max", 0) or 0)}
    if mode == SPEC_DRAFT:
        draft = str(form.get("engine-draft-model", "") or "")
        if not draft:
            from zoe_panel.errors import ConfigError

            raise ConfigError("speculative decoding with a draft model: pick the draft model")
        return out | {"spec_type": "draft-simple", "draft_model": draft}
    return out | {"spec_type": mode, "draft_model": ""}


def vllm_panel(rt: Runtime, model: str | None, flavor: str) -> None:
    """vLLM's two prerequisites, each a button and a job: the install (its own venv) and the
    Hugging Face folder made from the chosen GGUF."""
    from zoe_panel.engine.flavors.vllm import hf_dir
    from zoe_panel.engine.vllm_support import DOWNLOAD_MB, package
    from zoe_panel.ui.widgets import attempt

    ok, detail = flavors.get(flavor).available(rt.settings)
    with st.container(key="engine-vllm"):
        for job in [j for j in rt.jobs.jobs() if j.title in ("vLLM",) or j.title.endswith(".hf")]:
            if job.active:
                st.progress(job.progress, text=f"{job.kind} {job.title}: {job.detail or 'starting…'}")
            elif job.state == "failed":
                st.error(md(job.error, inline=False))
        busy = any(j.active and (j.title == "vLLM" or j.title.endswith(".hf")) for j in rt.jobs.jobs())
        if not ok:
            st.caption(f"vLLM is not installed here. It goes into its own venv: {package()}, about {DOWNLOAD_MB} MB.")
            if st.button(f"Install vLLM (about {DOWNLOAD_MB} MB)", key="engine-vllm-install", disabled=busy):
                attempt(rt.start_vllm_install)
            return
        if model and not (hf_dir(rt.store.resolve(model)) / "config.json").is_file():
            st.caption("vLLM serves Hugging Face folders: this GGUF needs one beside it (bf16, made here).")
            if st.button("Prepare it for vLLM", key="engine-vllm-prepare", disabled=busy):
                attempt(lambda: rt.start_vllm_prepare(str(model)))
        else:
            st.caption(f"vLLM ready: {md(detail)}. Start takes about 2 minutes here (torch compile).")


def speculative_section(rt: Runtime, models: list[str]) -> None:
    """The Draft section: an n-gram mode this build offers, or a smaller library model whose
    vocabulary matches the chosen model's."""
    from zoe_panel.errors import ZoePanelError

    caps = rt.engine_capabilities()
    ngram = [t for t in caps.spec_types if t.startswith("ngram")] if caps is not None else []
    has_draft = caps is None or not caps.flags or caps.supports("-md") or caps.supports("--spec-draft-model")
    modes = [SPEC_NONE, *ngram, *([SPEC_DRAFT] if has_draft else [])]
    c1, c2, c3 = st.columns(3)
    mode = c1.selectbox("Speculative decoding", modes, key="engine-spec-mode")
    c3.number_input("Draft tokens per step (0 = engine default)", 0, 64, key="engine-draft-max")  # value: the preset
    if mode == SPEC_DRAFT:
        target = st.session_state.get("engine-model")
        usable = []
        for name in models:
            if name == target:
                continue
            try:
                rt.draft_check(str(target), name)
                usable.append(name)
            except ZoePanelError:
                continue
        c2.selectbox(
            "Draft model (same vocabulary)",
            [str(rt.store.resolve(n)) for n in usable],
            format_func=lambda p: p.rsplit("/", 1)[-1],
            key="engine-draft-model",
            help="Only library models whose tokenizer matches the chosen model are listed.",
        )
        if not usable:
            c2.caption("No library model shares this model's vocabulary.")
    if not ngram and caps is not None and caps.flags:
        st.caption("This llama-server has no n-gram speculative modes (no --spec-type in its --help).")


def start_from_form(rt: Runtime, form: Mapping[str, Any], backend: str | None = None) -> EngineStatus:
    model = form.get("engine-model")
    if not model:
        from zoe_panel.errors import ConfigError

        raise ConfigError("pick a model first")
    from zoe_panel.ui.auth_view import client_address

    if flavors.get(str(form.get("engine-flavor", defaults.FLAVOR))).multi_model:
        from zoe_panel.ui.router_view import start_router

        start_router(rt, int(form.get("engine-models-max", 4)), int(form.get("engine-budget-mib", 0)))
        return rt.engine.status(max_age_s=0)
    rpc, split_kw = split_form(form)
    if rpc:
        spec, _plan = rt.rpc_spec(str(model), rpc, **split_kw, **spec_overrides(form))
    else:
        spec = rt.default_spec(str(model), **spec_overrides(form))
    return rt.engine.start(spec, backend=backend, client=client_address())


def stop_engine(rt: Runtime) -> EngineStatus:
    from zoe_panel.ui.auth_view import client_address

    return rt.engine.stop(client=client_address())


def live_status(rt: Runtime) -> None:
    from zoe_panel.ui.alarm_view import alarm_banner

    alarm_banner(rt, "engine")
    status = rt.engine.status()
    with st.container(key="engine-state"):
        st.markdown(state_line(status))
        if status.state == EngineState.FAILED:
            st.error(md(status.reason or "the engine failed", inline=False))
            diagnosis_block(rt, status)
        elif status.state == EngineState.UNHEALTHY:
            st.warning(md(status.reason, inline=False))
        elif status.state == EngineState.STARTING:
            st.caption(md(status.reason or "loading the model…"))
        elif status.state == EngineState.READY and (note := rt.engine.placement(status)):
            st.caption(f":material/memory: {md(note)}")
    if status.state == EngineState.READY and status.spec and status.spec.rpc:
        split_truth(rt)
    if status.state == EngineState.READY and status.spec and flavors.get(status.spec.flavor).multi_model:
        from zoe_panel.ui.router_view import models_panel

        models_panel(rt, "engine")
    with st.container(key="engine-log", height=360, autoscroll=True):
        lines = [parse_stamped(x).render() for x in rt.engine.logs(300)]
        st.code("\n".join(lines) or "(no log yet)", language=None, wrap_lines=True)


VERDICT_BADGE = {
    Verdict.FITS: ":green-badge[:material/check: fits]",
    Verdict.TIGHT: ":orange-badge[:material/warning: tight]",
    Verdict.WONT_FIT: ":red-badge[:material/block: will not fit]",
}


def form_spec(rt: Runtime, form: Mapping[str, Any]) -> Any:
    model = form.get("engine-model")
    return rt.default_spec(str(model), **spec_overrides(form)) if model else None


def split_truth(rt: Runtime) -> None:
    """A running split: per worker, the prediction against the buffers llama.cpp reported."""
    from zoe_panel.errors import ZoePanelError
    from zoe_panel.ui.widgets import fmt_bytes

    try:
        got = rt.running_split()
    except ZoePanelError as e:
        st.caption(f"No split comparison: {md(e)}")
        return
    if got is None:
        return
    _plan, rows = got
    if not any(r["reported_weights_bytes"] for r in rows):
        st.caption("Split: waiting for llama.cpp's buffer lines to compare with the prediction.")
        return

    def cell(r: dict[str, Any], key: str) -> str:
        have = r[f"reported_{key}"]
        err = r[f"error_pct_{key}"]
        return f"{fmt_bytes(r[f'predicted_{key}'])} / {fmt_bytes(have) if have else '-'}" + (
            f" ({err:+.1f} %)" if err is not None else ""
        )

    with st.container(key="engine-split-truth"):
        st.markdown("**Split: predicted / reported by llama.cpp, per worker**")
        st.table(
            [
                {
                    "worker": r["node"],
                    "layers": f"{r['layers']}" + (" + output" if r["output"] else ""),
                    "weights": cell(r, "weights_bytes"),
                    "KV": cell(r, "kv_bytes"),
                    "compute": cell(r, "compute_bytes"),
                }
                for r in rows
            ]
        )


def split_panel(rt: Runtime, form: Mapping[str, Any]) -> str | None:
    """The form's split over RPC workers: layers, memory and verdict per node."""
    from zoe_panel.errors import ZoePanelError
    from zoe_panel.ui.widgets import fmt_bytes

    try:
        rpc, split_kw = split_form(form)
        if not rpc:
            return None
        spec = form_spec(rt, form)
        if spec is None:
            return None
        _spec, plan = rt.rpc_spec(spec.model_name, rpc, **split_kw, **spec_overrides(form))
    except ZoePanelError as e:
        with st.container(key="engine-split"):
            st.error(f"Split over RPC workers: {md(e, inline=False)}")
        return str(Verdict.WONT_FIT)
    with st.container(key="engine-split", border=True):
        st.markdown(
            f"**Split over {len(plan.rpc)} RPC worker(s)** {VERDICT_BADGE[plan.verdict]} · "
            f"`-ngl {plan.n_gpu_layers} -ts {plan.ts_arg()}`"
        )
        st.table(
            [
                {
                    "node": p.node.name,
                    "layers": p.layer_text,
                    "weights": fmt_bytes(p.weights_bytes),
                    "KV": fmt_bytes(p.kv_bytes),
                    "compute": fmt_bytes(p.compute_bytes),
                    "total": fmt_bytes(p.total_bytes),
                    "free": f"{fmt_bytes(p.node.free_bytes)} ({p.node.source})",
                    "verdict": str(p.verdict),
                }
                for p in plan.parts
            ]
        )
        for note in plan.notes:
            st.caption(md(note))
        st.caption(
            "RPC has no authentication: keep workers on a trusted network. The local row includes the "
            "prompt cache and the engine's own memory."
        )
    return str(plan.verdict)


def estimate_panel(rt: Runtime, form: Mapping[str, Any]) -> str | None:
    """Predicted memory for the form's settings; returns the verdict (None if no estimate)."""
    from zoe_panel.errors import ZoePanelError
    from zoe_panel.ui.widgets import fmt_bytes

    if str(form.get("engine-rpc", "") or "").strip():
        return split_panel(rt, form)
    try:
        spec = form_spec(rt, form)
        if spec is None:
            return None
        est = rt.memory.estimate(spec)
        best = rt.memory.max_contexts(spec)
    except ZoePanelError as e:
        st.warning(f"No memory estimate: {md(e, inline=False)}")
        return None
    with st.container(key="engine-estimate", border=True):
        st.markdown(
            f"**Predicted memory** {VERDICT_BADGE[est.verdict]} "
            f"· need {fmt_bytes(est.need_bytes)} of {fmt_bytes(est.available_bytes)} available "
            f"({est.budget.note})"
        )
        if est.budget.gpu_held_bytes is not None:
            st.caption(
                f"The GPU already holds {fmt_bytes(est.budget.gpu_held_bytes)} "
                + ("(counted in used memory, so already outside MemAvailable)" if est.budget.kind == "unified" else "")
            )
        rows = [
            {"stage": stage, "part": part, "bytes": fmt_bytes(n), "detail": detail}
            for stage, part, n, detail in est.parts()
        ]
        if not est.calibration:
            rows.append(
                {"stage": "", "part": "calibration", "bytes": "", "detail": "no measured run of this model yet"}
            )
        # a static table: st.dataframe's canvas grid loads its own script (and pandas on the server) first,
        # which held this page's estimate back by ~0.8 s on a first open
        with st.container(key="engine-estimate-table"):
            st.table(rows)
        st.caption("Largest context that fits: " + " · ".join(f"{ct}: {n:,}" for ct, n in best.items()))
        if flavors.get(spec.flavor).grows_after_load:
            st.caption(
                f"After READY the engine may grow by {fmt_bytes(est.after_load_bytes)}: it runs with "
                f"`--cache-ram {spec.cache_ram_mib}` and `--ctx-checkpoints {spec.ctx_checkpoints}` "
                f"(at READY {fmt_bytes(est.at_ready_bytes)}, total {fmt_bytes(est.total_bytes)})",
                help="llama-server keeps a prompt cache in host RAM (upstream default 8 GiB) and, for "
                "sliding-window and recurrent models, context checkpoints per slot (upstream 32). The panel "
                "sizes the cache from available memory minus the floor (Settings: cache_ram_mib, "
                "memory_floor_mib).",
            )
        for note in est.notes:
            st.caption(note)
    return est.verdict


def diagnosis_block(rt: Runtime, status: EngineStatus) -> None:
    d = rt.engine.diagnose(status)
    if d is None:
        return
    with st.container(key="engine-diagnosis"):
        st.error(f"**{md(d.title)}** {md(d.detail, inline=False)}")
        if d.fixes:
            st.markdown("**What to change:**\n" + "\n".join(f"- {md(f)}" for f in d.fixes))
