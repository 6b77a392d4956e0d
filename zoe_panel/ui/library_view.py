"""Models page pieces that change the library: Hub download, upload, jobs, verify, quantize, delete."""

from __future__ import annotations

from collections.abc import Iterator

import streamlit as st

from zoe_panel.errors import ZoePanelError
from zoe_panel.models.download import list_gguf
from zoe_panel.models.library import add_upload, delete, verify
from zoe_panel.models.quantize import TARGETS
from zoe_panel.runtime import Runtime
from zoe_panel.ui.auth_view import audit
from zoe_panel.ui.widgets import attempt

CHUNK = 8 << 20


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
    labels = [f"{m.label}  ·  {m.quant}  ·  {m.size / 2**30:.2f} GiB" for m in models]
    pick = st.selectbox("File", range(len(models)), format_func=lambda i: labels[i], key="models-hf-file")
    if st.button("Download", key="models-hf-download", type="primary"):
        job = attempt(lambda: rt.start_download(repo_seen, models[pick], revision=rev_seen))
        audit(rt, "download", "started" if job else "refused", target=f"{repo_seen}/{models[pick].label}")
        if job:
            st.toast(f"Downloading {models[pick].label}…")


def upload_panel(rt: Runtime) -> None:
    # A per-widget cap can only lower the server-wide server.maxUploadSize (16 GiB in .streamlit/config.toml)
    cap = rt.settings.upload_max_mb or None
    up = st.file_uploader(
        "Upload a .gguf file",
        type=["gguf"],
        key="models-upload",
        max_upload_size=cap,
        help="Streamed to a temporary file next to the models, checked as GGUF, then moved in."
        + (f" Limit {cap} MB (ZOE_UPLOAD_MAX_MB)." if cap else ""),
    )
    if up is None or st.session_state.get("models-upload-done") == up.file_id:
        return
    st.session_state["models-upload-done"] = up.file_id

    def chunks() -> Iterator[bytes]:
        up.seek(0)
        while block := up.read(CHUNK):
            yield block

    path = attempt(
        lambda: add_upload(rt.store, up.name, chunks(), size=up.size, margin_bytes=rt.settings.disk_margin_bytes)
    )
    audit(rt, "upload", "ok" if path else "refused", target=up.name)
    if path:
        st.success(f"Added {path.name}.")


def jobs_panel(rt: Runtime) -> None:
    jobs = rt.jobs.jobs()
    if not jobs:
        return
    st.subheader("Jobs")
    for job in jobs:
        with st.container(key=f"job-{job.id}", border=True):
            st.markdown(f"**{job.kind}** {job.title} · {job.state}")
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
            st.toast(f"Quantizing {name} to {target}…")
    if c3.button("Delete", key="models-delete"):
        st.session_state["models-delete-pending"] = name
    if st.session_state.get("models-delete-pending") == name:
        st.warning(f"Delete {name} from disk? This cannot be undone.")
        if st.button(f"Yes, delete {name}", key="models-delete-confirm", type="primary"):
            status = rt.controller.status()
            in_use = status.spec.model if status.spec and status.state.is_running else None
            removed = attempt(lambda: delete(rt.store, name, in_use=in_use))
            audit(rt, "delete", "ok" if removed else "refused", target=name)
            st.session_state.pop("models-delete-pending", None)
            if removed:
                st.success(f"Deleted {name}.")


def verified_label(rt: Runtime, path: object) -> str:
    try:
        rec = rt.verify_log.get(path)  # type: ignore[arg-type]
    except (OSError, ZoePanelError):
        return ""
    if not rec:
        return "not checked"
    return "sha256 ok" if rec["ok"] else "BAD"
