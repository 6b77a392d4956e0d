"""The exporter's pieces without a server: llama.cpp's metrics renamed under zoe_llamacpp_, the
bearer token, and the refusal to open the port off loopback without one."""

from __future__ import annotations

import io

import pytest
from prometheus_client import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from zoe_panel.errors import ConfigError
from zoe_panel.exporter import check_binding, reexport, wsgi_app

LLAMACPP = """# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 46
# HELP llamacpp:predicted_tokens_seconds Average generation throughput in tokens/s.
# TYPE llamacpp:predicted_tokens_seconds gauge
llamacpp:predicted_tokens_seconds 61.5
# HELP llamacpp:requests_processing Number of requests processing.
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 0
"""


class _Fixed(Collector):
    def collect(self):  # type: ignore[no-untyped-def]
        yield from reexport(LLAMACPP)


def _registry() -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Fixed())
    return reg


def test_llamacpp_metrics_are_reexported_with_a_prefix() -> None:
    text = generate_latest(_registry()).decode()
    assert "zoe_llamacpp_prompt_tokens_total 46.0" in text
    assert "zoe_llamacpp_predicted_tokens_seconds 61.5" in text
    assert "llamacpp:" not in text


def _call(app, auth: str | None) -> tuple[str, bytes]:  # type: ignore[no-untyped-def]
    got: dict[str, str] = {}
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "QUERY_STRING": "", "wsgi.input": io.BytesIO()}
    if auth is not None:
        environ["HTTP_AUTHORIZATION"] = auth

    def start(status: str, headers: list[tuple[str, str]]) -> None:
        got["status"] = status

    body = b"".join(app(environ, start))
    return got["status"], body


def test_the_token_is_required_when_set() -> None:
    app = wsgi_app(_registry(), "s3cret")
    assert _call(app, None)[0].startswith("401")
    assert _call(app, "Bearer wrong")[0].startswith("401")
    status, body = _call(app, "Bearer s3cret")
    assert status.startswith("200") and b"zoe_llamacpp_prompt_tokens_total" in body
    assert _call(wsgi_app(_registry(), ""), None)[0].startswith("200")


def test_off_loopback_needs_a_token() -> None:
    check_binding("127.0.0.1", "")
    check_binding("0.0.0.0", "tok")
    with pytest.raises(ConfigError, match="exporter_token"):
        check_binding("0.0.0.0", "")
