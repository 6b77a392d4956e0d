"""Write the drop-in LlamaCppProvider module for the running engine.

The template is a real, importable module (llamacpp_provider.py, tested as it is); generating it
fills its constants with the running engine's base URL, model id, measured decode speed and
generation cap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zoe_panel.engine.base import EngineSpec, EngineStatus
    from zoe_panel.runtime import Runtime

TEMPLATE = Path(__file__).with_name("llamacpp_provider.py")
STYLES = ("zoe",)
FALLBACK_TOKENS_PER_S = 10.0  # an Orin NX on a 7B model: a safe guess until a speed is measured


@dataclass(frozen=True)
class ProviderTarget:
    base_url: str  # without /v1
    model: str
    tokens_per_s: float | None  # measured on this engine; None = not measured yet
    max_tokens: int  # the engine's cap for requests that set none
    engine: str = ""  # a line saying which engine, for the header


def render(target: ProviderTarget, style: str = "zoe") -> str:
    """The provider module's source for ``target``."""
    if style not in STYLES:
        raise ValueError(f"style {style!r}: the styles are {', '.join(STYLES)}")
    text = TEMPLATE.read_text()
    speed = target.tokens_per_s or FALLBACK_TOKENS_PER_S
    note = "" if target.tokens_per_s else "  # not measured yet: chat with the engine once, then regenerate"
    values = {
        "BASE_URL": f"BASE_URL = {target.base_url!r}",
        "MODEL": f"MODEL = {target.model!r}",
        "MEASURED_TOKENS_PER_S": f"MEASURED_TOKENS_PER_S = {speed:.1f}{note}",
        "DEFAULT_MAX_TOKENS": f"DEFAULT_MAX_TOKENS = {int(target.max_tokens)}",
    }
    for name, line in values.items():
        text, n = re.subn(rf"^{name} = .*$", line.replace("\\", "\\\\"), text, count=1, flags=re.MULTILINE)
        if n != 1:
            raise RuntimeError(f"the provider template lost its {name} line")
    if target.engine:
        text = text.replace(
            "runs; the constants below are that engine's.",
            f"runs; the constants below are that engine's:\n{target.engine}.",
            1,
        )
    return text


def measured_tokens_per_s(chat_stats: list[dict[str, object]]) -> float | None:
    """Median decode speed of the chats recorded on an engine run, or None."""
    import statistics

    speeds = [float(r["gen_tokens_per_s"]) for r in chat_stats if r.get("gen_tokens_per_s")]  # type: ignore[arg-type]
    return round(statistics.median(speeds), 1) if speeds else None


@dataclass(frozen=True)
class ReadyEngine:
    """A READY engine's status with its spec and base URL known to be there."""

    status: EngineStatus
    spec: EngineSpec
    base_url: str


def ready_engine(rt: Runtime) -> ReadyEngine:
    from zoe_panel.engine.base import EngineState
    from zoe_panel.errors import EngineNotRunning

    st = rt.engine.status(max_age_s=0)
    if st.state != EngineState.READY or st.spec is None or st.base_url is None:
        raise EngineNotRunning(f"no engine is READY (state {st.state.value}): start one first (start --wait 60)")
    return ReadyEngine(st, st.spec, st.base_url)


def provider_source(rt: Runtime, style: str = "zoe") -> str:
    """The drop-in provider module for the READY engine."""
    from zoe_panel.endpoint import model_id

    eng = ready_engine(rt)
    spec = eng.spec
    # this run's chats, else those of earlier runs of the same model
    speed = measured_tokens_per_s(rt.history.chat_stats(run_id=eng.status.run_id))
    for run in rt.history.runs(model=spec.model_name, limit=20):
        speed = speed or measured_tokens_per_s(rt.history.chat_stats(run_id=run.run_id))
    try:
        mid = model_id(eng.base_url, spec.api_key)
    except Exception:  # noqa: BLE001 - the alias the engine was started with is the id it serves
        mid = spec.alias or spec.model_name
    engine = f"#   {spec.model_name} on {eng.base_url} ({eng.status.backend}/{spec.flavor}, run {eng.status.run_id})"
    return render(ProviderTarget(eng.base_url, mid, speed, spec.n_predict or 512, engine), style)
