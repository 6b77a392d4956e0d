"""Prometheus metrics for the panel and its engine, in the text format, on a port of their own.

Everything is gathered at scrape time by one collector (no background state to drift): the latest
memory sample (the panel's sampler when one runs, else a fresh host reading), the engine's state
and model, its predicted and measured memory, the last chat's throughput from History, and
llama.cpp's own ``/metrics`` re-exported under ``zoe_llamacpp_`` (its names use colons, which
Prometheus keeps for recording rules). Off loopback a bearer token is required: the metrics name
models and clients' throughput, and the port must not become an unauthenticated window."""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry

from zoe_panel.engine.base import EngineState
from zoe_panel.errors import ConfigError

if TYPE_CHECKING:
    from zoe_panel.runtime import Runtime

log = logging.getLogger(__name__)
PREFIX = "zoe_"
LLAMACPP_PREFIX = "zoe_llamacpp_"


class PanelCollector(Collector):
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> Iterator[Metric]:
        yield from self._memory()
        yield from self._engine()
        yield from self._chat()
        yield from self._llamacpp()

    def _memory(self) -> Iterable[Metric]:
        from zoe_panel.telemetry.host import HostSource

        s = self.rt.ring.latest() or HostSource().sample()
        bands = {
            "available": s.ram_available_bytes,
            "used": s.ram_used_bytes,
            "page_cache": s.ram_cached_bytes,
            "total": s.ram_total_bytes,
        }
        for band, value in bands.items():
            g = GaugeMetricFamily(f"{PREFIX}memory_{band}_bytes", f"System memory: {band.replace('_', ' ')}")
            g.add_metric([], float(value))
            yield g
        g = GaugeMetricFamily(f"{PREFIX}swap_used_bytes", "Swap in use")
        g.add_metric([], float(s.swap_used_bytes))
        yield g
        optional: dict[str, tuple[float | int | None, str]] = {
            "gpu_memory_used_bytes": (s.gpu_mem_used_bytes, "GPU memory in use (NVML, or NvMap on a Jetson)"),
            "power_watts": (s.power_w, "Board or GPU power draw"),
            "engine_rss_bytes": (s.engine_rss_bytes, "The engine's resident memory (process tree)"),
            "cpu_percent": (s.cpu_pct, "CPU load, % of all cores"),
        }
        for name, (reading, doc) in optional.items():
            if reading is not None:
                g = GaugeMetricFamily(f"{PREFIX}{name}", doc)
                g.add_metric([], float(reading))
                yield g

    def _engine(self) -> Iterable[Metric]:
        status = self.rt.engine.status()
        g = GaugeMetricFamily(f"{PREFIX}engine_state", "1 for the engine's current state", labels=["state"])
        for state in EngineState:
            g.add_metric([state.value.lower()], 1.0 if status.state == state else 0.0)
        yield g
        spec = status.spec
        info = GaugeMetricFamily(
            f"{PREFIX}engine_info", "The engine's model and configuration", labels=["model", "flavor", "backend", "ctx"]
        )
        if spec is not None:
            info.add_metric([spec.model_name, spec.flavor, status.backend, str(spec.ctx)], 1.0)
        yield info
        restarts = CounterMetricFamily(f"{PREFIX}engine_restarts", "Restarts by the restart policy in this run")
        restarts.add_metric([], float(status.restarts or 0))
        yield restarts
        if spec is not None and status.state.is_running:
            try:
                est = self.rt.memory.estimate(spec)
            except Exception as e:  # noqa: BLE001 - a scrape without the estimate still serves the rest
                log.debug("no estimate for the exporter: %s", e)
            else:
                p = GaugeMetricFamily(
                    f"{PREFIX}engine_predicted_bytes", "The estimate for the running engine", labels=["stage"]
                )
                p.add_metric(["at_ready"], float(est.at_ready_bytes))
                p.add_metric(["total"], float(est.total_bytes))
                yield p

    def _chat(self) -> Iterable[Metric]:
        last = self.rt.history.last_chat_stats()
        if not last:
            return
        for name, key, scale, doc in (
            ("chat_gen_tokens_per_second", "gen_tokens_per_s", 1.0, "Generation speed of the last chat reply"),
            ("chat_prompt_tokens_per_second", "prompt_tokens_per_s", 1.0, "Prompt speed of the last chat reply"),
            ("chat_ttft_seconds", "ttft_ms", 1e-3, "Time to first token of the last chat reply"),
        ):
            if last.get(key) is not None:
                g = GaugeMetricFamily(f"{PREFIX}{name}", doc)
                g.add_metric([], float(last[key]) * scale)
                yield g

    def _llamacpp(self) -> Iterable[Metric]:
        status = self.rt.engine.status()
        if status.state != EngineState.READY or not status.base_url or status.spec is None:
            return
        import httpx

        headers = {"Authorization": f"Bearer {status.spec.api_key}"} if status.spec.api_key else {}
        try:
            r = httpx.get(status.base_url + "/metrics", headers=headers, timeout=2.0)
            r.raise_for_status()
        except httpx.HTTPError as e:
            log.debug("llama.cpp /metrics unavailable: %s", e)
            return
        yield from reexport(r.text)


def reexport(text: str, prefix: str = LLAMACPP_PREFIX) -> Iterator[Metric]:
    """llama.cpp's exposition (``llamacpp:prompt_tokens_total``…) renamed under ``prefix``."""
    for fam in text_string_to_metric_families(text):
        base = fam.name.replace("llamacpp:", "").replace(":", "_")
        kind = fam.type if fam.type in ("counter", "gauge") else "gauge"
        name = prefix + base
        labels = sorted({k for s in fam.samples for k in s.labels})
        out: CounterMetricFamily | GaugeMetricFamily = (
            CounterMetricFamily(name, fam.documentation or base, labels=labels)
            if kind == "counter"
            else GaugeMetricFamily(name, fam.documentation or base, labels=labels)
        )
        for sample in fam.samples:
            if kind == "counter" and not sample.name.endswith("_total"):
                continue  # _created and the like
            out.add_metric([sample.labels.get(k, "") for k in labels], float(sample.value))
        yield out


def registry_for(rt: Runtime) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(PanelCollector(rt))
    return reg


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("exporter: " + format, *args)


class _ThreadingServer(WSGIServer):
    daemon_threads = True

    def process_request(self, request: Any, client_address: Any) -> None:
        t = threading.Thread(target=self._one, args=(request, client_address), daemon=True)
        t.start()

    def _one(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - one bad scrape must not stop the server
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)


def wsgi_app(registry: CollectorRegistry, token: str) -> Callable[..., Any]:
    from prometheus_client import make_wsgi_app

    inner = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if token:
            got = environ.get("HTTP_AUTHORIZATION", "")
            if not hmac.compare_digest(got.encode(), f"Bearer {token}".encode()):
                start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")])
                return [b"a bearer token is required (exporter_token)\n"]
        return inner(environ, start_response)

    return app


def check_binding(host: str, token: str) -> None:
    from zoe_panel.auth import is_loopback

    if not is_loopback(host) and not token:
        raise ConfigError(
            f"the metrics exporter on {host} would be open to the network: set exporter_token "
            "(ZOE_EXPORTER_TOKEN), or keep exporter_host on 127.0.0.1"
        )


def serve(rt: Runtime, host: str, port: int, token: str = "") -> WSGIServer:
    """Start the exporter in a background thread; returns the server (``shutdown()`` stops it)."""
    check_binding(host, token)
    try:
        server = make_server(host, port, wsgi_app(registry_for(rt), token), _ThreadingServer, handler_class=_Quiet)
    except OSError as e:
        raise ConfigError(f"the metrics exporter cannot listen on {host}:{port}: {e.strerror}") from None
    threading.Thread(target=server.serve_forever, daemon=True, name="zoe-exporter").start()
    return server
