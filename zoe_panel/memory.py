"""MemoryAdvisor: the machine's memory budget, estimates for a spec, calibration from past runs,
and failure diagnosis. The glue between fit.py (pure), telemetry and History."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from zoe_panel.diagnosis import Diagnosis, diagnose
from zoe_panel.engine.base import EngineSpec, EngineStatus
from zoe_panel.engine.loadlog import LoadEvent
from zoe_panel.engine.oomcheck import OomEvidence
from zoe_panel.engine.oomcheck import evidence as oom_evidence
from zoe_panel.errors import EstimateError
from zoe_panel.history import History, Run
from zoe_panel.models.fit import Estimate, MemoryBudget, estimate, max_context, repack_types
from zoe_panel.models.gguf_meta import GGUFInfo
from zoe_panel.models.hf_model import HfModel, hf_needs_vllm
from zoe_panel.models.store import ModelStore
from zoe_panel.telemetry.base import Sample
from zoe_panel.telemetry.host import HostSource

CACHE_CHOICES = ("f16", "q8_0", "q4_0")


def memory_kind(
    source_name: str,
    meminfo_sample: Sample | None,
    tegra_release: Path = Path("/etc/nv_tegra_release"),
    *,
    gpu_total_bytes: int | None = None,
) -> str:
    """unified (Jetson: CPU and GPU share RAM), discrete (a GPU NVML reports) or cpu. Decided by
    the hardware, not by the telemetry source: a panel sampling /proc/meminfo on an H200 machine
    (or the CLI, which samples nothing) still has a discrete GPU."""
    if source_name == "jetson" or tegra_release.exists():
        return "unified"
    if meminfo_sample is not None and meminfo_sample.source == "host" and meminfo_sample.gpu_mem_used_bytes is not None:
        return "unified"  # NvMapMemUsed in /proc/meminfo: a Jetson without the jtop service
    if source_name == "nvml" or gpu_total_bytes:
        return "discrete"
    return "cpu"


def measured_bytes(run: Run) -> int | None:
    """What a past run really took up to READY: the engine's RSS plus what it added on the GPU.
    None for a load that failed: it stopped part way, so its peak says how far it got, not how
    wrong the estimate was (see load_progress)."""
    if not run.peak_engine_rss_bytes or run.outcome == "failed" or run.ready_at is None:
        return None
    return int(run.peak_engine_rss_bytes) + int(run.peak_gpu_bytes or 0)


class MemoryAdvisor:
    def __init__(
        self,
        store: ModelStore,
        history: History,
        *,
        latest_sample: Callable[[], Sample | None],
        source_name: Callable[[], str],
        gpu_free: Callable[[], tuple[int | None, int | None]] = lambda: (None, None),
    ) -> None:
        self.store = store
        self.history = history
        self.latest_sample = latest_sample
        self.source_name = source_name
        self.gpu_free = gpu_free

    def budget(self) -> MemoryBudget:
        sample = self.latest_sample() or HostSource().sample()
        probe = memory_kind(self.source_name(), sample)
        free, total = self.gpu_free() if probe != "unified" else (None, None)
        kind = memory_kind(self.source_name(), sample, gpu_total_bytes=total)
        note = f"{kind}: MemAvailable from /proc/meminfo"
        held: int | None = None
        if kind == "unified":
            held = sample.gpu_mem_used_bytes
            note = "unified memory (Jetson): CPU and GPU share MemAvailable"
        elif kind == "discrete":
            held = total - free if free is not None and total is not None else sample.gpu_mem_used_bytes
            note = "GPU memory free from NVML; host MemAvailable for the rest"
        return MemoryBudget(
            kind,
            sample.ram_available_bytes,
            free,
            total,
            note,
            gpu_held_bytes=held,
            repack_types=self.repack_types(),
            host_total_bytes=sample.ram_total_bytes,
        )

    @staticmethod
    def repack_types() -> tuple[str, ...]:
        import platform

        from zoe_panel.build.variants import cpu_flags

        return repack_types(platform.machine(), cpu_flags())

    def binary_bytes(self, spec: EngineSpec) -> int | None:
        """The engine's binary and libraries as resident pages, as History last measured them for
        this model's runs of the same flavour (None: not measured yet)."""
        for run in self.history.runs(limit=50):
            if run.flavor == spec.flavor and run.binary_rss_bytes:
                return int(run.binary_rss_bytes)
        return None

    def calibration(self, model_name: str) -> dict[str, Any]:
        """How far reality was from the estimate for this model on this machine."""
        ratios = []
        for run in self.history.runs(model=model_name, limit=50):
            measured = measured_bytes(run)
            predicted = run.predicted_at_ready_bytes
            if measured and predicted and run.outcome in ("ready", "stopped"):
                ratios.append(measured / predicted)
        if not ratios:
            return {}
        factor = min(3.0, max(0.5, statistics.median(ratios)))
        return {
            "factor": round(factor, 4),
            "runs": len(ratios),
            "note": f"scaled ×{factor:.2f} from {len(ratios)} measured run(s) of this model here",
        }

    def estimate(
        self,
        spec: EngineSpec,
        *,
        calibrated: bool = True,
        budget: MemoryBudget | None = None,
        info: GGUFInfo | HfModel | None = None,
    ) -> Estimate:
        """``info``: a header read elsewhere (a Hub file, a GGUF outside the library)."""
        from zoe_panel.engine import flavors
        from zoe_panel.models.hf_model import is_hf_folder

        vllm = flavors.get(spec.flavor).memory_model == "vllm"
        if info is None and is_hf_folder(spec.model):
            from zoe_panel.models.fit_vllm import vllm_estimate
            from zoe_panel.models.hf_model import read_hf_model

            if not vllm:
                raise EstimateError(hf_needs_vllm(Path(spec.model)))
            return vllm_estimate(read_hf_model(Path(spec.model)), spec, budget or self.budget())
        if isinstance(info, HfModel):  # a folder not fetched yet (a Hub repo's config and sizes)
            if not vllm:
                raise EstimateError(hf_needs_vllm(info.path))
            from zoe_panel.models.fit_vllm import vllm_estimate

            return vllm_estimate(info, spec, budget or self.budget())
        info = info or self.store.info(Path(spec.model))
        if vllm:
            from zoe_panel.models.fit_vllm import vllm_estimate

            return vllm_estimate(info, spec, budget or self.budget())
        cal = self.calibration(spec.model_name) if calibrated else {}
        draft = None
        if spec.draft_model:
            from zoe_panel.models.fit import check_draft

            draft = self.store.info(Path(spec.draft_model))
            check_draft(info, draft)
        return estimate(
            info, spec, budget or self.budget(), calibration=cal, binary_bytes=self.binary_bytes(spec), draft=draft
        )

    def max_contexts(
        self, spec: EngineSpec, budget: MemoryBudget | None = None, info: GGUFInfo | HfModel | None = None
    ) -> dict[str, int]:
        """The largest context that fits, per KV cache type (llama.cpp); for vLLM, one figure: the
        trained context, at most what its KV space holds (its --max-model-len check at start)."""
        from zoe_panel.engine import flavors

        if flavors.get(spec.flavor).memory_model == "vllm":
            from zoe_panel.models.fit_vllm import max_context_vllm
            from zoe_panel.models.hf_model import read_hf_model

            if info is None:  # read once, for the estimate and the trained context both
                info = (
                    read_hf_model(Path(spec.model)) if Path(spec.model).is_dir() else self.store.info(Path(spec.model))
                )
            est = self.estimate(spec, budget=budget, info=info)
            return {"vLLM": max(0, min(max_context_vllm(info), est.n_ctx))}
        if isinstance(info, HfModel):
            raise EstimateError(hf_needs_vllm(info.path))
        info = info or self.store.info(Path(spec.model))
        budget = budget or self.budget()
        cal = self.calibration(spec.model_name)
        return {ct: max_context(info, spec, budget, ct, calibration=cal) for ct in CACHE_CHOICES}

    def diagnose(self, status: EngineStatus, events: list[LoadEvent], engine_version: str = "") -> Diagnosis | None:
        spec = status.spec
        est = None
        max_fn = None
        if spec is not None:
            try:
                budget = self.budget()
                est = self.estimate(spec, budget=budget)
                if not Path(spec.model).is_dir():  # a Hugging Face folder has vLLM's limits, not llama.cpp's
                    info = self.store.info(Path(spec.model))
                    cal = est.calibration

                    def max_fn(ct: str) -> int:
                        return max_context(info, replace(spec), budget, ct, calibration=cal)
            except Exception:  # noqa: BLE001 - a diagnosis without numbers is still a diagnosis
                est = None
        oom = self.oom_evidence(status) if status.exit_code == 137 else None
        workers = []
        if spec is not None and spec.rpc and any(str(e.detail.get("kind", "")).startswith("rpc_") for e in events):
            from zoe_panel.workers.probe import probe_all

            workers = probe_all(spec.rpc, timeout_s=2.0)  # which node is gone, asked now
        return diagnose(
            status, events, estimate=est, max_ctx=max_fn, engine_version=engine_version, oom=oom, workers=workers
        )

    def oom_evidence(self, status: EngineStatus) -> OomEvidence:
        """The kernel's record of the kill, and the lowest available memory while the run lasted."""
        import time

        start = status.started_at or time.time() - 3600
        samples = self.history.samples(start, time.time())
        latest = self.latest_sample()
        if latest is not None and latest.t >= start:
            samples.append(latest)
        available = [s.ram_available_bytes for s in samples]
        total = max((s.ram_total_bytes for s in samples), default=None)
        return oom_evidence(status.pid, status.reason, available, total)
