"""Engine page pieces: spec from the form, and the live state + log block."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import streamlit as st

from zoe_panel.engine.base import EngineState, EngineStatus
from zoe_panel.engine.logfile import parse_stamped
from zoe_panel.runtime import Runtime
from zoe_panel.ui.widgets import state_line


def spec_overrides(form: Mapping[str, Any]) -> dict[str, Any]:
    """Widget values (by key) -> EngineSpec fields."""
    flavor = str(form.get("engine-flavor", "llama-server"))
    cache = str(form.get("engine-cache-type", "f16"))
    return {
        "ctx": int(form.get("engine-ctx", 4096)),
        "n_gpu_layers": int(form.get("engine-ngl", 999)),
        "cache_type_k": cache,
        "cache_type_v": cache,
        "parallel": 1 if flavor == "llama-cpp-python" else int(form.get("engine-parallel", 4)),
        "flavor": flavor,
        "port": int(form.get("engine-port", 8088)),
        "threads": int(form.get("engine-threads", 0)),
        "flash_attn": str(form.get("engine-flash-attn", "auto")),
    }


def start_from_form(rt: Runtime, form: Mapping[str, Any]) -> EngineStatus:
    model = form.get("engine-model")
    if not model:
        from zoe_panel.errors import ConfigError

        raise ConfigError("pick a model first")
    spec = rt.default_spec(str(model), **spec_overrides(form))
    return rt.start_engine(spec)


def live_status(rt: Runtime) -> None:
    status = rt.controller.status()
    with st.container(key="engine-state"):
        st.markdown(state_line(status))
        if status.state == EngineState.FAILED:
            st.error(status.reason or "the engine failed")
        elif status.state == EngineState.UNHEALTHY:
            st.warning(status.reason)
        elif status.state == EngineState.STARTING:
            st.caption(status.reason or "loading the model…")
    with st.container(key="engine-log", height=360, autoscroll=True):
        lines = [parse_stamped(x).render() for x in rt.controller.logs(300)]
        st.code("\n".join(lines) or "(no log yet)", language=None, wrap_lines=True)
