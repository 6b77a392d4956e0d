"""Models page pieces that change the library: Hub download, upload, jobs, verify, quantize, delete."""

from __future__ import annotations

import streamlit as st

from zoe_panel.errors import ZoePanelError
from zoe_panel.models.download import list_gguf
from zoe_panel.models.library import delete, verify
from zoe_panel.models.quantize import TARGETS
from zoe_panel.runtime import Runtime
from zoe_panel.ui.auth_view import audit
from zoe_panel.ui.widgets import attempt, md


def hub_panel(rt: Runtime) -> None:
    c1, c2 = st.columns([3, 1])
    repo = c1.text_input("Hugging Face repo", placeholder="bartowski/Llama-3.2-3B-Instruct-GGUF", key="models-hf-repo")
    revision = c2.text_input("Revision", "main", key="models-hf-revision")
    if st.button("List GGUF files", key="models-hf-list"):
        found = attempt(lambda: list_gguf(repo.strip(), revision=revision.strip() or "main"))
        st.session_state["hf-models"] = (repo.strip(), revision, found or [])
    repo_seen, rev_seen, models = st.session_state.get("hf-models", ("", "main", []))
    if not models:
        return
    fit_panel(rt, repo_seen, rev_seen, models)
    labels = [f"{m.label}  ·  {m.quant}  ·  {m.size / 2**30:.2f} GiB" for m in models]
    pick = st.selectbox("File", range(len(models)), format_func=lambda i: labels[i], key="models-hf-file")
    if st.button("Download", key="models-hf-download", type="primary"):
        job = attempt(lambda: rt.start_download(repo_seen, models[pick], revision=rev_seen))
        audit(rt, "download", "started" if job else "refused", target=f"{repo_seen}/{models[pick].label}")
        if job:
            st.toast(f"Downloading {md(models[pick].label)}…")


def hf_repo_panel(rt: Runtime) -> None:
    """A Hugging Face repository (safetensors, AWQ too) as a folder vLLM serves: looked up first
    (architecture, quantization, files and size), then downloaded as a job."""
    from zoe_panel.models.hf_download import plan_repo

    c1, c2, c3 = st.columns([3, 1, 2])
    repo = c1.text_input("Hugging Face repo", placeholder="Qwen/Qwen2.5-1.5B-Instruct-AWQ", key="models-vllm-repo")
    revision = c2.text_input("Revision", "main", key="models-vllm-revision")
    name = c3.text_input("Folder name (optional)", key="models-vllm-name", placeholder="the repository's name")
    st.caption("vLLM serves Hugging Face folders. Only safetensors weights are fetched: pickled .bin weights run code.")
    if st.button("Look up", key="models-vllm-lookup"):
        plan = attempt(lambda: plan_repo(repo.strip(), revision=revision.strip() or "main"))
        st.session_state["vllm-plan"] = plan
    plan = st.session_state.get("vllm-plan")
    if plan is None:
        return
    quant = plan.quant_method or "not quantized"
    with st.container(key="models-vllm-plan"):
        st.markdown(
            f"**{md(plan.repo_id)}** · {md(plan.architecture)} · {md(quant)} · {len(plan.weights)} weight file(s), "
            f"{len(plan.files)} files, **{plan.size / 2**30:.2f} GiB** to download"
        )
        ctx = int(st.number_input("Context for the fit (vLLM)", 256, 4_194_304, 4096, step=256, key="models-vllm-ctx"))
        got = attempt(lambda: rt.hf_repo_fit(plan, ctx=ctx, name=name.strip() or None))
        if got:
            from zoe_panel.ui.engine_view import VERDICT_BADGE
            from zoe_panel.ui.widgets import fmt_bytes

            est, best = got
            st.markdown(
                f"On vLLM here: {VERDICT_BADGE[est.verdict]} · need {fmt_bytes(est.need_bytes)} of "
                f"{fmt_bytes(est.available_bytes)} · largest context {best.get('vLLM', 0):,}"
            )
            for note in est.notes:
                st.caption(note)
    if st.button("Download for vLLM", key="models-vllm-download", type="primary"):
        job = attempt(lambda: rt.start_hf_download(plan.repo_id, revision=plan.revision, name=name.strip() or None))
        audit(rt, "download", "started" if job else "refused", target=plan.repo_id)
        if job:
            st.toast(f"Downloading {md(plan.repo_id)}…")


def fit_panel(rt: Runtime, repo: str, revision: str, models: list) -> None:  # type: ignore[type-arg]
    """Will each file fit here, before downloading it: its header only, read with Range requests."""
    c1, c2 = st.columns([1, 3])
    ctx = int(c1.number_input("Context for the fit", 256, 4_194_304, 4096, step=256, key="models-hf-ctx"))
    c2.caption("Reads each file's header (metadata and tensor table, a few MiB at most): nothing is downloaded.")
    key = (repo, revision, ctx, tuple(m.label for m in models))
    if st.button("Will it fit?", key="models-hf-fit"):
        with st.spinner("reading headers…"):
            rows = attempt(lambda: rt.hub_fit_rows(repo, models, revision=revision, ctx=ctx))
        st.session_state["hf-fit"] = (key, rows or [])
    seen, rows = st.session_state.get("hf-fit", (None, []))
    if seen != key or not rows:
        return
    shown = []
    for r in rows:
        best = r.get("max_context") or {}
        shown.append(
            {
                "file": r["file"],
                "quant": r["quant"],
                "size (GiB)": round(r["size_bytes"] / 2**30, 2),
                f"at ctx {ctx}": r["verdict"],
                "at READY (MiB)": round(r["at_ready_bytes"] / 2**20) if r.get("at_ready_bytes") else None,
                "with after-READY (MiB)": round(r["total_bytes"] / 2**20) if r.get("total_bytes") else None,
                "largest ctx f16": best.get("f16"),
                "q8_0": best.get("q8_0"),
                "q4_0": best.get("q4_0"),
                "header read (KiB)": round(r["header_bytes_read"] / 1024) if r.get("header_bytes_read") else None,
                "problem": r.get("error", ""),
            }
        )
    with st.container(key="models-hf-fit-table"):
        # a static table: a handful of rows, readable (and selectable) as text
        st.table(shown)


UPLOAD_HTML = """
<div style="font-family: sans-serif; font-size: 14px">
  <input type="file" id="zoe-upload-file" accept=".gguf">
  <button id="zoe-upload-go" disabled>Upload</button>
  <progress id="zoe-upload-bar" max="100" value="0" style="width: 60%; display: none"></progress>
  <div id="zoe-upload-msg" style="margin-top: 6px"></div>
</div>
<script>
const token = __TOKEN__, prefix = __PREFIX__, cap = __CAP__;
const file = document.getElementById("zoe-upload-file"), go = document.getElementById("zoe-upload-go");
const bar = document.getElementById("zoe-upload-bar"), msg = document.getElementById("zoe-upload-msg");
file.onchange = () => { go.disabled = !file.files.length; msg.textContent = ""; };
go.onclick = () => {
  const f = file.files[0];
  if (!f) return;
  if (f.size > cap) {
    msg.textContent = f.name + " is larger than the upload cap (" + (cap / 2**30).toFixed(1) + " GiB)";
    return;
  }
  const xhr = new XMLHttpRequest();
  xhr.open("PUT", prefix + encodeURIComponent(f.name));
  xhr.setRequestHeader("Authorization", "Bearer " + token);
  xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = 100 * e.loaded / e.total; };
  xhr.onload = () => {
    let body = {}; try { body = JSON.parse(xhr.responseText); } catch (e) {}
    bar.style.display = "none"; go.disabled = false;
    msg.textContent = body.ok ? "Added " + body.name + "." : ("Refused: " + (body.error || xhr.status));
  };
  xhr.onerror = () => { go.disabled = false; msg.textContent = "The connection was lost; nothing was added."; };
  go.disabled = true; bar.style.display = "inline"; bar.value = 0; msg.textContent = "Uploading " + f.name + "…";
  xhr.send(f);
};
</script>
"""


def upload_panel(rt: Runtime) -> None:
    """A model upload that streams to disk (PUT /zoe/upload), never through Streamlit's in-memory
    uploader; the token ties it to this signed-in session."""
    import json

    from streamlit.components.v1 import html

    from zoe_panel.ui.auth_view import session_id
    from zoe_panel.web.sessions import AUTHORIZED
    from zoe_panel.web.upload import upload_cap_bytes

    cap = upload_cap_bytes(rt.settings.upload_max_mb)
    base = str(st.get_option("server.baseUrlPath") or "").strip("/")
    prefix = (f"/{base}" if base else "") + "/zoe/upload/"
    page = (
        UPLOAD_HTML.replace("__TOKEN__", json.dumps(AUTHORIZED.token(session_id())))
        .replace("__PREFIX__", json.dumps(prefix))
        .replace("__CAP__", str(cap))
    )
    st.caption(
        f"Streamed to the models folder's staging area (never held in memory), checked as GGUF, then added. "
        f"Up to {cap / 2**30:.0f} GiB (setting upload_max_mb); the disk must keep "
        f"{rt.settings.disk_margin_bytes / 2**30:.1f} GiB free."
    )
    html(page, height=90)


def upload_progress() -> None:
    """Live state of the upload the server is receiving (for any tab); a finished one reloads the list."""
    from zoe_panel.web.upload import UPLOADS

    up = UPLOADS.current
    if up.state == "idle":
        return
    with st.container(key="models-upload-state"):
        if up.state in ("receiving", "checking"):
            frac = up.done / up.total if up.total else 0.0
            st.progress(
                frac, text=f"upload {md(up.name)}: {up.done / 2**20:.0f} / {up.total / 2**20:.0f} MiB ({up.state})"
            )
        elif up.state == "failed":
            st.error(f"upload {md(up.name)}: {md(up.message)}")
        elif up.state == "added":
            st.success(md(up.message))
    seen = st.session_state.get("models-upload-seen")
    if up.state == "added" and seen != up.at:
        st.session_state["models-upload-seen"] = up.at
        st.rerun(scope="app")  # the library table gains the new model


def jobs_panel(rt: Runtime) -> None:
    jobs = rt.jobs.jobs()
    if not jobs:
        return
    st.subheader("Jobs")
    for job in jobs:
        with st.container(key=f"job-{job.id}", border=True):
            st.markdown(f"**{md(job.kind)}** {md(job.title)} · {md(job.state)}")
            if job.active:
                st.progress(job.progress, text=job.detail or "starting…")
                if st.button("Cancel", key=f"job-cancel-{job.id}"):
                    rt.jobs.cancel(job.id)
            elif job.state == "failed":
                st.error(job.error)
            elif job.state == "done":
                st.success("done")


def manage_panel(rt: Runtime, names: list[str]) -> None:
    if not names:
        return
    name = str(st.selectbox("Model", names, key="models-manage"))
    c1, c2, c3 = st.columns(3)
    if c1.button("Verify (sha256)", key="models-verify"):
        with st.spinner("hashing…"):
            result = attempt(lambda: verify(rt.store, name, rt.verify_log))
        if result:
            (st.success if result["ok"] else st.error)(
                f"{'OK' if result['ok'] else 'BAD'}: sha256 {', '.join(result['sha256'])} {result['error']}"
            )
    target = str(c2.selectbox("Quantize to", list(TARGETS), key="models-quant-type"))
    if c2.button("Quantize", key="models-quantize"):
        job = attempt(lambda: rt.start_quantize(name, target))
        audit(rt, "quantize", "started" if job else "refused", target=f"{name} → {target}")
        if job:
            st.toast(f"Quantizing {md(name)} to {md(target)}…")
    if c3.button("Delete", key="models-delete"):
        st.session_state["models-delete-pending"] = name
    if st.session_state.get("models-delete-pending") == name:
        st.warning(f"Delete {md(name)} from disk? This cannot be undone.")
        if st.button(f"Yes, delete {name}", key="models-delete-confirm", type="primary"):
            status = rt.engine.status()
            in_use = status.spec.model if status.spec and status.state.is_running else None
            removed = attempt(lambda: delete(rt.store, name, in_use=in_use))
            audit(rt, "delete", "ok" if removed else "refused", target=name)
            st.session_state.pop("models-delete-pending", None)
            if removed:
                st.success(f"Deleted {md(name)}.")


def verified_label(rt: Runtime, path: object) -> str:
    try:
        rec = rt.verify_log.get(path)  # type: ignore[arg-type]
    except (OSError, ZoePanelError):
        return ""
    if not rec:
        return "not checked"
    return "sha256 ok" if rec["ok"] else "BAD"


def convert_panel(rt: Runtime) -> None:
    """Convert a Hugging Face checkpoint (a folder here, or a Hub repo) with llama.cpp's converter."""
    from zoe_panel.models.convert import ConvertError

    sup = rt.convert_support()
    if not sup.ready:
        st.info(
            f"Conversion needs llama.cpp's converter and PyTorch, which the panel does not otherwise use: "
            f"conversion support is {md(sup.detail)}. Installing it makes a separate environment "
            "(torch CPU build, transformers, sentencepiece: about 190 MB to download, 900 MB on disk; on a "
            "Jetson the JetPack torch is used as it is)."
        )
        if st.button("Install conversion support", key="models-convert-install"):
            job = attempt(rt.start_install_convert_support)
            audit(rt, "install conversion support", "started" if job else "refused")
        return
    st.caption(f"Conversion support: {md(sup.detail)}")
    c1, c2 = st.columns([3, 1])
    source = c1.text_input(
        "Checkpoint folder or Hugging Face repo",
        placeholder="HuggingFaceTB/SmolLM2-135M-Instruct",
        key="models-convert-src",
    )
    revision = c2.text_input("Revision", "main", key="models-convert-revision")
    c3, c4, c5 = st.columns(3)
    outtype = str(c3.selectbox("Output type", ("f16", "bf16", "q8_0"), key="models-convert-outtype"))
    quant = str(c4.selectbox("Then quantize to", ("(no)", *TARGETS), key="models-convert-quant"))
    name = c5.text_input("Name in the library (optional)", key="models-convert-name")
    if st.button("Convert", key="models-convert-go", type="primary", disabled=not source.strip()):
        try:
            job = rt.start_convert(
                source.strip(),
                outtype=outtype,
                quantize=None if quant == "(no)" else quant,
                name=name.strip() or None,
                revision=revision.strip() or "main",
            )
        except ConvertError as e:
            st.error(md(str(e), inline=False))
            st.session_state["models-convert-base"] = e.base_model
            audit(rt, "convert", "refused", target=source.strip(), detail=str(e))
        except ZoePanelError as e:
            st.error(md(str(e), inline=False))
        else:
            st.session_state["models-convert-base"] = None
            audit(rt, "convert", "started", target=f"{source.strip()} → {quant if quant != '(no)' else outtype}")
            st.toast(f"Converting {md(job.title)}…")
    base = st.session_state.get("models-convert-base")
    if base:
        st.button(f"Use the base model {base} instead", key="models-convert-use-base", on_click=_use_base, args=(base,))


def _use_base(base: str) -> None:
    # a callback: it runs before the page, when the source field may still be changed
    st.session_state["models-convert-src"] = base
    st.session_state["models-convert-base"] = None
