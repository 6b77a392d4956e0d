"""Composition root: one Runtime per process, shared by every browser session.

It builds the parts and wires them together; it does nothing else. The engine's front door is
``rt.engine`` (an :class:`~zoe_panel.engine.EngineService`); the model library is ``rt.store``;
History, telemetry, jobs and presets are reached the same way. Nothing starts at construction: the
panel process calls :meth:`Runtime.start_background` (the sampler thread, and bringing back an engine
that ran when the panel went down); the CLI never does. Pages call ``get_runtime()``; tests build
their own ``Runtime`` and install it with ``set_runtime()``.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from zoe_panel.admission import Admission
from zoe_panel.auth import LoginLimiter
from zoe_panel.chat import ChatClient
from zoe_panel.engine import defaults, flavors
from zoe_panel.engine.apikey import engine_api_key
from zoe_panel.engine.base import EngineSpec, EngineState, EngineStatus
from zoe_panel.engine.restore import DesiredEngine
from zoe_panel.engine.service import EngineService
from zoe_panel.errors import ConfigError, EngineNotRunning, InvalidModelError, ZoePanelError
from zoe_panel.history import History
from zoe_panel.jobs import Job, JobManager
from zoe_panel.jsonfile import make_private_dir
from zoe_panel.memalarm import RUNNING, AlarmWatch, MemoryAlarm, check, read_alarm
from zoe_panel.memory import MemoryAdvisor
from zoe_panel.models.download import RemoteModel, download
from zoe_panel.models.fit import Estimate
from zoe_panel.models.hf_model import hf_needs_vllm
from zoe_panel.models.library import VerifyLog
from zoe_panel.models.presets import Preset, PresetStore
from zoe_panel.models.quantize import plan as quantize_plan
from zoe_panel.models.quantize import run as quantize_run
from zoe_panel.models.remote import RemoteHeaders
from zoe_panel.models.split import Node, SplitPlan, plan_split
from zoe_panel.models.store import ModelStore
from zoe_panel.recorder import RunRecorder
from zoe_panel.roofline import Bandwidth, bandwidth, ceiling_for
from zoe_panel.settings import Settings, load_settings
from zoe_panel.sweep import SweepState, SweepStore
from zoe_panel.telemetry.base import Sample
from zoe_panel.telemetry.power import EnergyWindow
from zoe_panel.telemetry.registry import pick_source
from zoe_panel.telemetry.ring import RingBuffer
from zoe_panel.telemetry.sampler import Sampler
from zoe_panel.workers.manager import WorkerManager
from zoe_panel.workers.probe import Probe

log = logging.getLogger(__name__)

MIB = 1024 * 1024
VERDICT_HEADROOM = 512 * MIB  # fit.verdict: "fits" leaves at least max(512 MiB, 10 %)


class Runtime:
    def __init__(self, settings: Settings, *, sampler: bool = True) -> None:
        """``sampler=False``: a runtime for the CLI or a test, never sampling in the background."""
        self.settings = settings
        make_private_dir(settings.home)  # history (client addresses), settings (keys): the owner's only
        make_private_dir(settings.state_dir)
        self.store = ModelStore(settings.models_path, settings.state_dir / "gguf-cache.json")
        self.history = History(settings.history_db)
        self.ring = RingBuffer(settings.ring_seconds)
        self.telemetry_notes: list[str] = []
        self.sampler: Sampler | None = None
        self._wants_sampler = sampler
        self.memory = MemoryAdvisor(
            self.store,
            self.history,
            latest_sample=self.ring.latest,
            source_name=self._source_name,
            gpu_free=self._gpu_free,
        )
        self.engine = EngineService(settings, audit=self.history.audit, diagnoser=self.memory.diagnose)
        self.recorder = RunRecorder(
            self.history,
            logs=self.engine.logs,
            describe=self._describe_run,
            diagnose=self._diagnosis_text,
            keep_days=settings.history_keep_days,
        )
        self.engine.add_listener(self._on_engine_event)
        self.jobs = JobManager(on_finish=self._on_job_done)
        self.desired = DesiredEngine(settings.state_dir)
        self.login_limiter = LoginLimiter(settings.login_max_attempts, settings.login_lockout_s)
        self.presets = PresetStore(settings.state_dir / "presets.json")
        self.verify_log = VerifyLog(settings.state_dir / "verify.json")
        self.admission = Admission(
            settings.state_dir,
            predict=self.predict_model,
            preset_args=self._preset_args,
            model_files=lambda: [e.name for e in self.store.entries() if e.ok and "/" not in e.name],
            available=lambda: self.memory.budget().host_available_bytes,
            budget_mib=lambda: self.settings.router_budget_mib,
            floor_mib=lambda: self.settings.memory_floor_mib,
        )
        self._chat: tuple[tuple[str, str], ChatClient] | None = None
        self._chat_lock = threading.Lock()
        self._bandwidth: Bandwidth | None = None
        self.alarm = AlarmWatch(settings.state_dir)
        self.remote_headers = RemoteHeaders(settings.state_dir / "remote-headers.json")
        self.workers = WorkerManager(settings)
        self.sweeps = SweepStore(settings.state_dir)
        self.exporter: Any = None
        self.exporter_note = ""

    def start_background(self) -> None:
        """What only the panel process does: sample telemetry, and bring back a lost engine."""
        if self._wants_sampler:
            self.start_sampler()
            self.restore_engine()

    def start_exporter(self) -> str:
        """The Prometheus exporter in this process (the panel's), when ``exporter_port`` is set. A
        port already taken (another panel) is a note, not a failure of the panel."""
        from zoe_panel.exporter import serve

        s = self.settings
        if not s.exporter_port or self.exporter is not None:
            return self.exporter_note
        try:
            self.exporter = serve(self, s.exporter_host, s.exporter_port, s.exporter_token)
            self.exporter_note = f"metrics on http://{s.exporter_host}:{s.exporter_port}/metrics"
        except ZoePanelError as e:
            self.exporter_note = f"metrics exporter off: {e}"
            log.warning(self.exporter_note)
        return self.exporter_note

    # -- power ----------------------------------------------------------------------------
    def power_mode(self) -> str:
        """The board's power mode: the nvpmodel mode on a Jetson (with jetson_clocks when jtop says),
        '' elsewhere."""
        import time

        from zoe_panel.l4t import power_mode

        # the Monitor asks every second; the mode changes only by hand: read files at most every 10 s
        cached = getattr(self, "_power_mode", None)
        if cached is not None and time.monotonic() - cached[0] < 10.0:
            return str(cached[1])
        mode = power_mode(self.settings.nvpmodel_conf, self.settings.nvpmodel_status)
        extras = getattr(self.sampler.source if self.sampler else None, "extras", None)
        if mode and callable(extras):
            try:
                clocks = extras().get("jetson_clocks", "")
            except Exception:  # noqa: BLE001 - the mode alone is still worth showing
                clocks = ""
            if clocks:
                mode += f" (jetson_clocks {clocks})"
        self._power_mode = (time.monotonic(), mode)
        return mode

    def power_modes(self) -> list[tuple[int, str]]:
        """The modes this board offers (nvpmodel.conf), as (id, name)."""
        from zoe_panel.l4t import power_modes

        return power_modes(self.settings.nvpmodel_conf)

    def energy_window(self) -> EnergyWindow:
        """Start measuring the energy of one piece of work (a reply): RAPL, else the sampler's power."""
        return EnergyWindow(self.ring).start()

    # -- telemetry ------------------------------------------------------------------------
    def start_sampler(self) -> Sampler:
        if self.sampler is None:
            source, notes = pick_source(self.settings.telemetry)
            self.telemetry_notes = notes
            self.sampler = Sampler(
                source,
                self.ring,
                hz=self.settings.sample_hz,
                hz_loading=self.settings.sample_hz_loading,
                is_loading=self.engine.is_loading,
                engine_pid=self.engine.engine_pid,
            )
            self.sampler.add_listener(self._on_sample)
            self.history.prune(self.settings.history_keep_days)
            self.sampler.start()
        return self.sampler

    def _source_name(self) -> str:
        return self.sampler.source.name if self.sampler else "host"

    def _gpu_free(self) -> tuple[int | None, int | None]:
        source = self.sampler.source if self.sampler else None
        free = getattr(source, "free_gpu_bytes", None)
        latest = self.ring.latest()
        if free is not None and latest is not None and latest.gpu_mem_total_bytes:
            return free(), latest.gpu_mem_total_bytes
        from zoe_panel.telemetry.nvml import gpu_memory

        got = gpu_memory()  # no NVML sampler (the CLI, another source): ask NVML itself
        return got if got is not None else (None, None)

    def _on_sample(self, sample: Sample) -> None:
        status = self.engine.background_status()
        self.recorder.observe(status, sample)
        change = self.alarm.observe(
            sample, status, self.settings.memory_floor_mib * MIB, ready_rss_bytes=self.recorder.ready_rss()
        )
        if change is not None:
            alarm = self.alarm.current
            detail = alarm.message() if alarm else f"{sample.ram_available_bytes / MIB:.0f} MiB available again"
            self.history.audit("memory alarm", change, client="panel", target=status.run_id or "", detail=detail)

    def memory_alarm(self) -> MemoryAlarm | None:
        """The alarm now: the panel's episode, or (the CLI, no sampler) judged from a fresh sample."""
        status = self.engine.status()
        if self.sampler is not None:
            return self.alarm.current if status.state in RUNNING else None
        from zoe_panel.telemetry.host import HostSource

        run = self.history.run(status.run_id) if status.run_id else None
        sample = HostSource().sample()
        if status.pid:
            from zoe_panel.telemetry.sampler import process_tree_rss

            sample = sample.with_engine(process_tree_rss(status.pid), None)
        return check(
            sample,
            status,
            self.settings.memory_floor_mib * MIB,
            ready_rss_bytes=run.ready_rss_bytes if run else None,
            current=read_alarm(self.settings.state_dir),
        )

    def restart_smaller_cache(self, *, client: str = "panel") -> EngineStatus:
        """The alarm's offer: the same engine again with the suggested prompt cache cap."""
        from zoe_panel.errors import ConfigError

        status = self.engine.status(max_age_s=0)
        alarm = self.memory_alarm()
        if status.spec is None:
            raise ConfigError("no engine to restart")
        current = status.spec.cache_ram_mib
        size = alarm.suggested_cache_ram_mib if alarm and alarm.suggested_cache_ram_mib is not None else current // 2
        spec = replace(status.spec, cache_ram_mib=max(0, size // 64 * 64))
        self.engine.stop(client=client)
        self.history.audit(
            "restart with a smaller cache",
            "ok",
            client=client,
            target=spec.model_name,
            detail=f"{current} -> {spec.cache_ram_mib} MiB",
        )
        return self.engine.start(spec, backend=status.backend, client=client)

    def _on_engine_event(self, event: str, status: EngineStatus) -> None:
        if event in ("start", "load") and self.sampler is not None:
            self.sampler.boost(30.0)
        self.desired.remember(event, status)
        self.recorder.observe(status, self.ring.latest())

    def restore_engine(self) -> EngineStatus | None:
        """Bring back the engine that ran when the panel or the machine went down (setting restore_on_boot)."""
        if not self.settings.restore_on_boot:
            return None
        return self.desired.restore(self.engine)

    def recording(self) -> Callable[[EngineStatus], None]:
        """An ``on_poll`` for ``engine.wait`` in a process without the sampler thread (the CLI):
        host samples at the loading rate, so the run is recorded whoever started it."""
        if self.sampler is not None and self.sampler.running:
            return lambda st: None
        manual = Sampler(pick_source("host")[0], self.ring, engine_pid=self.engine.engine_pid)
        period = 1.0 / self.settings.sample_hz_loading
        next_at = [0.0]

        def observe(st: EngineStatus) -> None:
            if time.monotonic() >= next_at[0] or st.state != EngineState.STARTING:
                self.recorder.observe(st, manual.sample_once())
                next_at[0] = time.monotonic() + period
            if st.state != EngineState.STARTING:
                self.recorder.flush()

        return observe

    # -- runs -------------------------------------------------------------------------------
    def _describe_run(self, spec: EngineSpec) -> dict[str, Any]:
        out: dict[str, Any] = {"spec_json": json.dumps(spec.public_json())}
        out["engine_version"] = self.engine.version(spec)
        out["power_mode"] = self.power_mode() or None
        if flavors.get(spec.flavor).multi_model:
            return out  # a router's models are predicted one by one, as they load (admission)
        try:
            out["estimate_json"] = json.dumps(self.memory.estimate(spec).to_json())
            out["model_size_bytes"] = self.store.info(Path(spec.model)).file_size_bytes
        except Exception as e:  # noqa: BLE001 - a model that vanished still gets a run row
            log.warning("no estimate for run: %s", e)
        return out

    def _diagnosis_text(self, status: EngineStatus, events: list[Any]) -> str:
        d = self.memory.diagnose(status, events)
        return d.text() if d else ""

    # -- library jobs -------------------------------------------------------------------------
    def _on_job_done(self, job: Job) -> None:
        self.history.audit(job.kind, job.state, target=job.title, detail=job.error)

    def start_download(self, repo_id: str, model: RemoteModel, *, revision: str = "main") -> Job:
        def work(job: Job) -> Any:
            def progress(done: int, total: int) -> None:
                job.report(done / total if total else 0.0, f"{done / 2**20:.0f} / {total / 2**20:.0f} MiB")

            return download(
                self.store,
                repo_id,
                model,
                revision=revision,
                margin_bytes=self.settings.disk_margin_bytes,
                progress=progress,
                cancel=job.cancel,
                verify_log=self.verify_log,
            )

        return self.jobs.submit("download", model.label, work, exclusive_key=f"{repo_id}/{model.label}")

    def start_hf_download(self, repo_id: str, *, revision: str = "main", name: str | None = None) -> Job:
        """A Hugging Face repository into the library as a folder vLLM serves. Its config and file list
        are read now, so a repo that cannot be served is refused before any job starts."""
        from zoe_panel.models.hf_download import download_repo, folder_name, plan_repo

        plan = plan_repo(repo_id, revision=revision)
        title = folder_name(repo_id, name)

        def work(job: Job) -> Any:
            def progress(done: int, total: int) -> None:
                job.report(done / total if total else 0.0, f"{done / 2**20:.0f} / {total / 2**20:.0f} MiB")

            return str(
                download_repo(
                    self.store,
                    plan,
                    name=name,
                    margin_bytes=self.settings.disk_margin_bytes,
                    progress=progress,
                    cancel=job.cancel,
                )
            )

        return self.jobs.submit("download", title, work, exclusive_key=title)

    def start_quantize(self, model: str, target: str) -> Job:
        quantize_plan(self.store, model, target)  # refuse bad requests now, not in the job

        def work(job: Job) -> Any:
            return quantize_run(
                self.store,
                model,
                target,
                margin_bytes=self.settings.disk_margin_bytes,
                progress=job.report,
                cancel=job.cancel,
            )

        return self.jobs.submit("quantize", f"{model} → {target}", work, exclusive_key=f"{model} → {target}")

    # -- conversion -------------------------------------------------------------------------
    def convert_support(self) -> Any:
        from zoe_panel.models.convert import support

        return support(self.settings.cache_dir)

    def start_install_convert_support(self) -> Job:
        from zoe_panel.models.convert import install_support

        def work(job: Job) -> Any:
            return install_support(self.settings.cache_dir, progress=job.report, cancel=job.cancel)

        return self.jobs.submit("install", "conversion support", work, exclusive_key="convert-support")

    def start_convert(
        self,
        source: str,
        *,
        outtype: str = "f16",
        quantize: str | None = None,
        name: str | None = None,
        revision: str = "main",
    ) -> Job:
        """Convert a checkpoint (a local folder, or a Hub repo id fetched first) into the library,
        then optionally quantize it (the intermediate file is removed). A local folder is checked
        now, so a request that cannot work is refused before any job starts."""
        from zoe_panel.build.server import ensure_source
        from zoe_panel.models import convert as cv
        from zoe_panel.models.quantize import TARGETS

        if quantize is not None and quantize not in TARGETS:
            raise cv.ConvertError(f"quantize type {quantize!r} is not one of {', '.join(TARGETS)}")
        llama_cpp = ensure_source(self.settings.cache_dir)
        local = Path(source).expanduser()
        fetched = self.settings.cache_dir / "hf-src" / source.replace("/", "--")
        if local.is_dir():
            cv.preflight(local, llama_cpp)
        elif re.fullmatch(r"[\w.-]+/[\w.-]+", source):
            # config and model card first: an AWQ repo is refused before gigabytes are fetched
            cv.preflight(cv.fetch_card(source, fetched, revision=revision), llama_cpp, weights_needed=False)
        else:
            raise cv.ConvertError(f"{source!r} is neither a checkpoint folder nor a Hub repository id (owner/name)")
        sup = cv.support(self.settings.cache_dir)
        if not sup.ready:
            raise cv.ConvertError(f"conversion support is {sup.detail}")

        def work(job: Job) -> Any:
            if local.is_dir():
                return convert_folder(job, local)
            try:  # the fetched checkpoint is only a source: it goes once the GGUF is in the library
                src = cv.fetch_checkpoint(source, fetched, revision=revision, progress=lambda f, d: job.report(0.0, d))
                return convert_folder(job, src)
            finally:
                cv.cleanup_fetch(fetched)

        def convert_folder(job: Job, src: Path) -> Any:
            share = 0.6 if quantize else 1.0

            def step(f: float, d: str) -> None:
                job.report(f * share, d)

            out = cv.convert(
                self.store,
                src,
                cache=self.settings.cache_dir,
                llama_cpp=llama_cpp,
                outtype=outtype,
                name=name if not quantize else None,
                margin_bytes=self.settings.disk_margin_bytes,
                progress=step,
                cancel=job.cancel,
            )
            if not quantize:
                return out

            def quant_progress(f: float, d: str = "") -> None:
                job.report(share + (1 - share) * f, f"quantizing {d}")

            try:
                final = quantize_run(
                    self.store,
                    out.name,
                    quantize,
                    margin_bytes=self.settings.disk_margin_bytes,
                    progress=quant_progress,
                    cancel=job.cancel,
                )
            finally:
                out.unlink(missing_ok=True)  # the intermediate: only the quantized model is kept
                self.store.forget(out)
            if name:
                from zoe_panel.models.library import safe_name

                target = self.store.root / safe_name(name if name.lower().endswith(".gguf") else name + ".gguf")
                if not target.exists():
                    final.rename(target)
                    final = target
            return final

        title = f"{source} → {quantize or outtype.upper()}"
        return self.jobs.submit("convert", title, work, exclusive_key=f"convert {source}")

    def preset_for(self, model: str) -> Preset:
        """The saved preset, else the largest context the estimate says fits (f16 cache)."""
        saved = self.presets.get(model)
        if saved is not None:
            return saved
        path = self.store.resolve(model)
        if path.is_dir():  # vLLM: the trained context, at most 4096 to start with
            from zoe_panel.models.hf_model import read_hf_model

            trained = read_hf_model(path).shape.n_ctx_train or 4096
            return Preset(ctx=max(256, min(trained, 4096)))
        spec = self.default_spec(model)
        best = self.memory.max_contexts(spec).get("f16", 4096)
        return Preset(ctx=max(256, min(best, 4_194_304)))

    # -- specs ------------------------------------------------------------------------------
    def default_spec(self, model: str, **overrides: Any) -> EngineSpec:
        """A spec for a model name in the store, with the panel's defaults and settings."""
        path = self.store.resolve(model)
        flavor = self.settings.flavor
        if path.is_dir():  # a Hugging Face folder: vLLM serves it, nothing else does
            hf = self.store.hf_entry(path)
            if not hf.ok:
                raise InvalidModelError(hf.error)
            flavor = str(overrides.get("flavor") or "vllm")
            if flavors.get(flavor).memory_model != "vllm":
                raise ConfigError(hf_needs_vllm(path))
        else:
            entry = self.store.entry(path)
            if not entry.ok:
                raise InvalidModelError(entry.error)
        spec = EngineSpec(
            model=str(path),
            host=self.settings.engine_host,
            port=self.settings.engine_port,
            flavor=flavor,
            api_key=engine_api_key(self.settings),
            alias=path.stem,
            n_predict=self.settings.default_max_tokens,
            ctx_checkpoints=self.settings.ctx_checkpoints,
        )
        spec = replace(spec, **overrides) if overrides else spec
        if "cache_ram_mib" not in overrides:
            spec = replace(spec, cache_ram_mib=self.cache_ram_for(spec))
        return spec

    def spec_for_file(self, model: str, **overrides: Any) -> EngineSpec:
        """A spec for a model outside the library (a Hub file, a GGUF elsewhere): estimates only,
        nothing is started from it."""
        spec = EngineSpec(
            model=model,
            host=self.settings.engine_host,
            port=self.settings.engine_port,
            flavor=self.settings.flavor,
            n_predict=self.settings.default_max_tokens,
            ctx_checkpoints=self.settings.ctx_checkpoints,
        )
        return replace(spec, **overrides) if overrides else spec

    def estimate_anywhere(
        self, model: str, *, revision: str | None = None, **overrides: Any
    ) -> tuple[Estimate, dict[str, int], dict[str, Any]]:
        """The estimate for a library name, a GGUF path anywhere (read only) or an
        ``hf://ORG/REPO/FILE.gguf`` (its header over HTTP Range requests), with the largest
        context per cache type and where the header came from."""
        from zoe_panel.models.gguf_meta import read_gguf
        from zoe_panel.models.remote import HF_SCHEME, parse_hf_uri

        source: dict[str, Any]
        if model.startswith(HF_SCHEME):
            hub = parse_hf_uri(model, revision)
            got = self.remote_headers.info(hub)
            info = got.info
            source = {"kind": "hub", "uri": hub.uri, "bytes_read": got.bytes_read, "requests": got.requests}
            source["cached"] = got.cached
        else:
            path = Path(model).expanduser()
            if path.is_file() and not self._in_library(path):
                info = read_gguf(path.resolve())
                source = {"kind": "file", "path": str(path.resolve()), "read_only": True}
            else:
                spec = self.default_spec(model, **overrides)
                return self.memory.estimate(spec), self.memory.max_contexts(spec), {"kind": "library"}
        est, best = self.estimate_info(info, **overrides)
        return est, best, source

    def estimate_info(self, info: Any, **overrides: Any) -> tuple[Estimate, dict[str, int]]:
        """The estimate and largest contexts for a header read elsewhere, with the panel's defaults."""
        spec = self.spec_for_file(info.path, **overrides)
        if "cache_ram_mib" not in overrides:
            spec = replace(spec, cache_ram_mib=self.cache_ram_for(spec, info=info))
        return self.memory.estimate(spec, info=info), self.memory.max_contexts(spec, info=info)

    def hf_repo_fit(self, plan: Any, *, ctx: int, name: str | None = None) -> tuple[Estimate, dict[str, int]]:
        """A Hub repo on vLLM at ``ctx``, before its weights are fetched: from its config and the
        shards' sizes (HfRepoPlan)."""
        from zoe_panel.models.hf_download import planned_model

        model = planned_model(plan, name)
        spec = self.spec_for_file(str(model.path), flavor="vllm", ctx=ctx)
        return self.memory.estimate(spec, info=model), self.memory.max_contexts(spec, info=model)

    def hub_fit_rows(self, repo_id: str, models: list[RemoteModel], *, revision: str, ctx: int) -> list[dict[str, Any]]:
        """For the Models page: each Hub file's verdict at ``ctx`` and its largest contexts, from
        its header alone. A file whose header cannot be read gets the reason instead."""
        from zoe_panel.errors import ZoePanelError
        from zoe_panel.models.remote import HubFile

        rows = []
        for m in models:
            row: dict[str, Any] = {"file": m.label, "quant": m.quant, "size_bytes": m.size}
            try:
                got = self.remote_headers.info(
                    HubFile(repo_id, m.files[0].name, revision), parts=[(f.name, f.size) for f in m.files]
                )
                est, best = self.estimate_info(got.info, ctx=ctx)
                row |= {
                    "verdict": est.verdict.value,
                    "at_ready_bytes": est.at_ready_bytes,
                    "total_bytes": est.total_bytes,
                    "available_bytes": est.available_bytes,
                    "max_context": best,
                    "header_bytes_read": got.bytes_read,
                    "error": "",
                }
            except ZoePanelError as e:
                row |= {"verdict": "unknown", "error": str(e)}
            rows.append(row)
        return rows

    def _in_library(self, path: Path) -> bool:
        try:
            path.resolve().relative_to(self.store.root.resolve())
        except ValueError:
            return False
        return True

    def cache_ram_for(self, spec: EngineSpec, *, share: int = 1, info: Any = None) -> int:
        """The prompt cache cap for a spec: the setting, or (auto) what host memory has left after
        the engine's other parts and the safety floor, at most a quarter of RAM and never more
        than upstream's 8 GiB; 0 when nothing is left. ``share``: models that will split it."""
        if self.settings.cache_ram_mib >= 0:
            return self.settings.cache_ram_mib
        from zoe_panel.errors import ZoePanelError

        try:
            budget = self.memory.budget()
            est = self.memory.estimate(replace(spec, cache_ram_mib=0), budget=budget, info=info)
        except (ZoePanelError, OSError):
            return 0  # no estimate, no cache: the safe side
        available = budget.host_available_bytes // max(1, share)
        # keep the floor free, and the headroom a "fits" verdict asks for: an auto-sized cache must
        # never be what turns a fitting model into a tight one
        keep = max(self.settings.memory_floor_mib * MIB, VERDICT_HEADROOM, available // 10)
        spare = available - est.host_bytes - keep
        cap = defaults.CACHE_RAM_MAX_MIB
        if budget.host_total_bytes:
            cap = min(cap, budget.host_total_bytes // 4 // MIB)
        return max(0, min(cap, spare // MIB) // 64 * 64)

    # -- tuning sweeps ---------------------------------------------------------------------------
    def start_sweep(self, s: SweepState) -> Job:
        """Run (or resume) a sweep as a background job: progress, Cancel between configurations."""
        from zoe_panel.sweep import run_sweep

        def work(job: Job) -> Any:
            done = run_sweep(self, s, progress=job.report, cancel=job.cancel)
            return done.id

        # one sweep at a time: each starts and stops the engine
        return self.jobs.submit("sweep", "", work, exclusive_key="the engine")

    # -- vLLM -------------------------------------------------------------------------------------
    def start_vllm_install(self) -> Job:
        from zoe_panel.engine import vllm_support

        def work(job: Job) -> Any:
            return vllm_support.install(self.settings.cache_dir, progress=job.report, cancel=job.cancel).detail

        return self.jobs.submit("install", "", work, exclusive_key="vLLM")

    def start_vllm_prepare(self, model: str) -> Job:
        """Make the Hugging Face folder vLLM serves from a library GGUF, as a job."""
        from zoe_panel.engine import vllm_support

        path = self.store.resolve(model)
        if path.is_dir():
            raise ConfigError(f"{path.name} is already a Hugging Face folder: vLLM serves it as it is")

        def work(job: Job) -> Any:
            return str(
                vllm_support.prepare(
                    self.settings.cache_dir, self.settings.state_dir, path, progress=job.report, cancel=job.cancel
                )
            )

        return self.jobs.submit("prepare", "", work, exclusive_key=f"{path.stem}.hf")

    # -- speculative decoding -------------------------------------------------------------------
    def engine_capabilities(self) -> Any:
        """What the native llama-server accepts (its --help), or None when there is none here."""
        from zoe_panel.engine.binary import capabilities, find_llama_server

        try:
            return capabilities(find_llama_server(self.settings), self.settings.state_dir / "binaries.json")
        except ZoePanelError:
            return None

    def draft_check(self, target: str, draft: str) -> None:
        """Raise ConfigError when library model ``draft`` cannot draft for ``target``."""
        from zoe_panel.models.fit import check_draft

        check_draft(self.store.info(self.store.resolve(target)), self.store.info(self.store.resolve(draft)))

    # -- a model split over RPC workers ----------------------------------------------------------
    def split_nodes(
        self, rpc: tuple[str, ...], worker_free: dict[str, int] | None = None, *, strict: bool = True
    ) -> tuple[list[Node], list[Probe]]:
        """Each worker's free memory: as the worker reports it, or as entered by hand (which wins).
        ``strict``: a worker that does not answer and has no figure by hand is an error naming it."""
        from zoe_panel.errors import WorkerUnavailable
        from zoe_panel.workers.probe import probe_all

        given = worker_free or {}
        probes = probe_all(rpc, timeout_s=self.settings.rpc_probe_timeout_s)
        nodes, bad = [], []
        for p in probes:
            if p.endpoint in given:
                nodes.append(Node(p.endpoint, int(given[p.endpoint]), "entered by hand"))
            elif p.ok:
                nodes.append(Node(p.endpoint, p.free_bytes, "reported by the worker"))
            else:
                bad.append(p)
                nodes.append(Node(p.endpoint, 0, f"unknown ({p.state})"))
        if bad and strict:
            raise WorkerUnavailable(
                "; ".join(p.message() for p in bad) + " (or enter its free memory by hand to plan without it)"
            )
        return nodes, probes

    def split_plan(
        self,
        spec: EngineSpec,
        *,
        shares: tuple[float, ...] | None = None,
        worker_free: dict[str, int] | None = None,
        strict: bool = True,
    ) -> SplitPlan:
        """Where each layer of ``spec``'s model goes over its RPC workers and this machine, and each
        node's predicted memory and verdict. ``shares``: one per worker, then this machine (default:
        in proportion to free memory)."""
        nodes, _ = self.split_nodes(spec.rpc, worker_free, strict=strict)
        single = replace(spec, rpc=(), tensor_split=())
        est = self.memory.estimate(single)
        info = self.store.info(Path(spec.model))
        local_gpu = est.budget.kind != "cpu"
        local_free = (
            est.budget.gpu_free_bytes
            if est.budget.kind == "discrete" and est.budget.gpu_free_bytes is not None
            else est.budget.host_available_bytes
        )
        return plan_split(info, spec, est, local_free, nodes, shares=shares, local_gpu=local_gpu)

    def rpc_spec(
        self,
        model: str,
        rpc: tuple[str, ...],
        *,
        shares: tuple[float, ...] | None = None,
        worker_free: dict[str, int] | None = None,
        **overrides: Any,
    ) -> tuple[EngineSpec, SplitPlan]:
        """The engine spec for ``model`` split over ``rpc``, with the plan's explicit -ngl and -ts."""
        spec = replace(self.default_spec(model, **overrides), rpc=rpc, n_gpu_layers=999)
        plan = self.split_plan(spec, shares=shares, worker_free=worker_free)
        return replace(spec, n_gpu_layers=plan.n_gpu_layers, tensor_split=plan.tensor_split), plan

    def running_split(self) -> tuple[SplitPlan, list[dict[str, Any]]] | None:
        """For a running split engine: its placement and, per worker, predicted against what
        llama.cpp reported for weights, KV and compute."""
        from zoe_panel.models.split import compare, plan_for_spec

        status = self.engine.status()
        spec = status.spec
        if spec is None or not spec.rpc or not status.state.is_running:
            return None
        nodes = [Node(ep, 0, "in use by the engine") for ep in spec.rpc]
        single = replace(spec, rpc=(), tensor_split=())
        est = self.memory.estimate(single)
        info = self.store.info(Path(spec.model))
        plan = plan_for_spec(
            info, spec, est, est.budget.host_available_bytes, nodes, local_gpu=est.budget.kind != "cpu"
        )
        return plan, compare(plan, self.engine.load_events())

    def router_spec(self, *, models_max: int = 4, **overrides: Any) -> EngineSpec:
        """A router engine over the models folder (the presets file is written on start)."""
        spec = EngineSpec(
            model=str(self.store.ensure_root().resolve()),
            host=self.settings.engine_host,
            port=self.settings.engine_port,
            flavor="router",
            api_key=engine_api_key(self.settings),
            n_predict=self.settings.default_max_tokens,
            extra_args=("--models-max", str(models_max)),
        )
        return replace(spec, **overrides) if overrides else spec

    def instance_spec(self, name: str) -> EngineSpec:
        """How the router runs one of its models: the model's preset on a single-model llama-server."""
        file = name if name.lower().endswith(".gguf") else name + ".gguf"
        preset = self.preset_for(file)
        fields = {k: v for k, v in preset.spec_fields().items() if k != "extra_args"}
        # Each loaded model keeps its own prompt cache. Sized from free memory it would change with
        # every prediction, and admission compares predictions over time: a fixed cap instead
        # (the setting, or defaults.ROUTER_CACHE_RAM_MIB), counted in every model's prediction.
        cache = self.settings.cache_ram_mib if self.settings.cache_ram_mib >= 0 else defaults.ROUTER_CACHE_RAM_MIB
        return self.default_spec(file, flavor=defaults.FLAVOR, cache_ram_mib=cache, **fields)

    def predict_model(self, name: str) -> int:
        """Predicted memory of one router model, as the Engine page would predict it alone."""
        return self.memory.estimate(self.instance_spec(name)).total_bytes

    def _preset_args(self, file: str) -> dict[str, Any]:
        spec = self.instance_spec(file)
        args: dict[str, Any] = {
            "ctx-size": spec.ctx,
            "n-gpu-layers": spec.n_gpu_layers,
            "cache-type-k": spec.cache_type_k,
            "cache-type-v": spec.cache_type_v,
            "flash-attn": spec.flash_attn,
            "parallel": spec.parallel,
            # booleans: the presets file negates with the no- prefix, not with false
            "kv-unified" if spec.kv_unified else "no-kv-unified": True,
        }
        if spec.threads:
            args["threads"] = spec.threads
        # after-load memory, per model: the router's own command line does not carry these
        args["cache-ram"] = spec.cache_ram_mib
        args["ctx-checkpoints"] = spec.ctx_checkpoints
        return args

    # -- chat -------------------------------------------------------------------------------
    def bandwidth(self) -> Bandwidth:
        """Memory bandwidth for the decode ceiling: settings, the known-device table, or measured once."""
        if self._bandwidth is None:
            source = self.sampler.source if self.sampler else None
            gpu = getattr(source, "device_name", "") or ""
            self._bandwidth = bandwidth(
                self.settings.memory_bandwidth_gbps, self.settings.state_dir / "bandwidth.json", gpu_name=gpu
            )
        return self._bandwidth

    def ceiling(self, stats: dict[str, Any]) -> tuple[float, Bandwidth] | None:
        """Decode tokens/s ceiling for the running engine's model and this reply's context."""
        st = self.engine.status()
        if st.spec is None:
            return None
        try:
            est = self.memory.estimate(st.spec, calibrated=False)
        except ZoePanelError:
            return None
        bw = self.bandwidth()
        return ceiling_for(est, stats, bw), bw

    def chat_client(self) -> ChatClient:
        """A shared client for the READY engine; httpx.Client is thread-safe and keeps
        connections alive, which saves a TCP handshake on every reply."""
        st = self.engine.status()
        if st.state != EngineState.READY or st.base_url is None or st.spec is None:
            raise EngineNotRunning(f"no engine is READY (state {st.state.value}); start one on the Engine page")
        key = (st.base_url, st.spec.api_key)
        with self._chat_lock:
            if self._chat is None or self._chat[0] != key:
                if self._chat is not None:
                    self._chat[1].close()
                self._chat = (key, ChatClient(st.base_url, api_key=st.spec.api_key))
            return self._chat[1]

    def close(self) -> None:
        if self.exporter is not None:
            self.exporter.shutdown()
            self.exporter.server_close()
            self.exporter = None
        if self.sampler is not None:
            self.sampler.stop()
        self.recorder.flush()
        if self._chat is not None:
            self._chat[1].close()


_runtime: Runtime | None = None
_lock = threading.Lock()


def get_runtime() -> Runtime:
    """The panel process's runtime, built and started (sampler, restore) on first use."""
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = Runtime(load_settings())
            _runtime.start_background()
            _runtime.start_exporter()
        return _runtime


WARM = threading.Event()  # set when warm_up() has finished (GET /zoe/ready answers 200 from then on)


def warm_up() -> None:
    """At server start, before anyone asks: build the runtime (the sampler starts, a lost engine is
    brought back), import what the pages need (pandas and pyarrow for tables: ~0.7 s), read the
    library's metadata and estimate the default model. The first visitor then pays none of it.
    Failures are left for the pages to report (a damaged settings file has its own page)."""
    import importlib

    try:
        rt = get_runtime()
        for module in ("pandas", "pyarrow", "plotly.graph_objects", "zoe_panel.ui.engine_view"):
            importlib.import_module(module)
        models = [e for e in rt.store.entries() if e.ok]
        if models:
            spec = rt.default_spec(models[0].name)
            rt.memory.estimate(spec)
            rt.memory.max_contexts(spec)
    except Exception as e:  # noqa: BLE001 - a warm-up; the page that needs the part says what is wrong
        log.info("warm-up stopped early: %s", e)
    finally:
        WARM.set()


def set_runtime(runtime: Runtime | None) -> None:
    global _runtime
    with _lock:
        old, _runtime = _runtime, runtime
    if old is not None and old is not runtime:
        old.close()
