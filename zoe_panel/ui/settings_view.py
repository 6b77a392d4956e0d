"""Settings page: every setting with where its value comes from; edits go to settings.toml."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import streamlit as st

from zoe_panel.engine import flavors
from zoe_panel.errors import ZoePanelError
from zoe_panel.runtime import Runtime, set_runtime
from zoe_panel.settings import BACKENDS, DOCKER_GPU, ENV_NAMES, RESTART_POLICIES, TELEMETRY, save_settings_file
from zoe_panel.ui.auth_view import audit
from zoe_panel.ui.widgets import md

CHOICES = {
    "flavor": flavors.names(),
    "backend": BACKENDS,
    "telemetry": TELEMETRY,
    "restart_policy": RESTART_POLICIES,
    "docker_gpu": DOCKER_GPU,
}
SECRET = {"password_hash", "engine_api_key"}
GROUPS = {
    "Engine": (
        "flavor",
        "backend",
        "llama_server",
        "engine_host",
        "engine_port",
        "engine_api_key",
        "default_max_tokens",
        "stop_timeout_s",
        "start_timeout_s",
        "restart_policy",
        "restart_max",
        "restore_on_boot",
    ),
    "Docker / Jetson": (
        "docker_image",
        "docker_vllm_image",
        "docker_llama_server",
        "docker_shm_size",
        "docker_gpu",
        "docker_runtime",
        "tegra_release",
        "jtop_socket",
        "nvpmodel_conf",
        "nvpmodel_status",
    ),
    "Telemetry and history": (
        "telemetry",
        "sample_hz",
        "sample_hz_loading",
        "ring_seconds",
        "history_keep_days",
        "memory_bandwidth_gbps",
    ),
    "Memory": ("memory_floor_mib", "cache_ram_mib", "ctx_checkpoints", "router_budget_mib"),
    "Files": ("models_dir", "cache_dir", "disk_margin_bytes", "upload_max_mb"),
    "Access": ("session_timeout_s", "login_max_attempts", "login_lockout_s", "trusted_proxies"),
}


def _widget(name: str, value: Any, pinned: bool) -> Any:
    key = f"settings-{name}"
    label = name + (f"  (set by {ENV_NAMES[name]})" if pinned else "")
    if name in CHOICES:
        opts = CHOICES[name]
        return st.selectbox(label, opts, index=opts.index(value), key=key, disabled=pinned)
    if isinstance(value, bool):
        return st.checkbox(label, value, key=key, disabled=pinned)
    if isinstance(value, int):
        return st.number_input(label, value=value, step=1, key=key, disabled=pinned)
    if isinstance(value, float):
        return st.number_input(label, value=value, key=key, disabled=pinned, format="%g")
    text = "" if value is None else str(value)
    if name in SECRET:
        return st.text_input(label, text, key=key, disabled=pinned, type="password")
    return st.text_input(label, text, key=key, disabled=pinned)


def settings_form(rt: Runtime) -> None:
    s = rt.settings
    changes: dict[str, Any] = {}
    with st.form("settings-form"):
        for group, names in GROUPS.items():
            st.subheader(group)
            for name in names:
                value = getattr(s, name)
                pinned = s.sources.get(name, "").startswith("ZOE_")
                new = _widget(name, value, pinned)
                old = "" if value is None else (str(value) if isinstance(value, Path) else value)
                if not pinned and new != old:
                    changes[name] = new
        saved = st.form_submit_button("Save", type="primary")
    if saved:
        apply(rt, changes)


def apply(rt: Runtime, changes: dict[str, Any]) -> None:
    if not changes:
        st.info("Nothing changed.")
        return
    try:
        new = save_settings_file(rt.settings, changes)
    except ZoePanelError as e:
        st.error(md(e, inline=False))
        audit(rt, "settings change", "refused", target=", ".join(changes), detail=str(e))
        return
    shown = ", ".join(f"{k}={'***' if k in SECRET else v}" for k, v in changes.items())
    audit(rt, "settings change", "ok", target=shown)
    set_runtime(Runtime(dataclasses.replace(new)))  # every session picks up the new settings on its next run
    st.success(f"Saved to {new.settings_file}: {shown}")
