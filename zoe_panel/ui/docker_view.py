"""Engine page pieces for the Docker backend: backend choice, image status and pull, export."""

from __future__ import annotations

from typing import Any

import streamlit as st

from zoe_panel.engine.images import ImageMissing, PullProgress
from zoe_panel.errors import ZoePanelError
from zoe_panel.l4t import arch_support_note
from zoe_panel.runtime import Runtime
from zoe_panel.settings import BACKENDS
from zoe_panel.ui.auth_view import audit
from zoe_panel.ui.widgets import md


def backend_panel(rt: Runtime, model_arch: str | None, flavor: str | None = None) -> str:
    """Backend select; for Docker the image, its llama.cpp build, and a pull when it is missing."""
    choice = st.selectbox(
        "Backend",
        BACKENDS,
        index=BACKENDS.index(rt.settings.backend),
        key="engine-backend",
        help="auto: Docker on a Jetson whose engine image is here, else the native llama-server",
    )
    backend = rt.engine.choose_backend(choice)
    if backend != "docker":
        st.caption(f"backend: native process ({rt.settings.flavor})" if choice == "auto" else "")
        return backend
    eng = rt.engine.docker
    try:
        image = eng.image_ref(flavor)
    except ZoePanelError as e:  # no image known for this flavour here
        st.error(md(e, inline=False))
        return backend
    try:
        caps, _ = eng.preflight(image, flavor)
    except ImageMissing as e:
        st.warning(md(e, inline=False))
        if st.button(f"Pull {image}", key="engine-pull"):
            pull_with_progress(rt, image)
        return backend
    except ZoePanelError as e:
        st.error(md(e, inline=False))
        return backend
    build = f" · llama.cpp {caps.version} (build {caps.build or '?'})" if caps.version else ""
    st.caption(f"Docker image `{image}`{build} · GPU: {eng.gpu_mode()}")
    note = arch_support_note(model_arch or "", caps.build)
    if note:
        st.warning(note)
    return backend


def pull_with_progress(rt: Runtime, image: str) -> None:
    bar = st.progress(0.0, text=f"pulling {image}…")

    def show(p: PullProgress) -> None:
        bar.progress(p.fraction, text=f"{image}: {p.status}")

    try:
        rt.engine.docker.images.pull(image, show)
    except ZoePanelError as e:
        st.error(md(e, inline=False))
        return
    bar.progress(1.0, text=f"{image} pulled")
    audit(rt, "pull", "ok", target=image)


def export_panel(rt: Runtime, spec: Any) -> None:
    if spec is None:
        return
    with st.expander("Copy as command (native, docker run, compose)"):
        forms = rt.engine.exports(spec)
        st.code(forms["native"], language="bash")
        st.code(forms["docker_run"], language="bash")
        st.code(forms["compose"], language="yaml")
