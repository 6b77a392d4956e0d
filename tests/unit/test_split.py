"""The split planner replays llama.cpp's layer placement; worker addresses, shares and probes are
checked with clear messages; RPC failures in the engine log are named per node."""

from __future__ import annotations

import socket
import threading

import pytest

from zoe_panel.diagnosis import rpc_failure
from zoe_panel.engine.argv import llama_server_argv
from zoe_panel.engine.base import EngineSpec
from zoe_panel.engine.loadlog import parse_lines
from zoe_panel.errors import ConfigError
from zoe_panel.models.split import Node, layer_devices, parse_shares, shares_by_free
from zoe_panel.workers.probe import Probe, parse_endpoints, parse_worker_free, probe


def test_layer_placement_replays_llama_cpp() -> None:
    # SmolLM2: 30 blocks + output; -ts 1,1 gave 16 and 14 blocks (+ output on the second) in the log
    devs = layer_devices(30, 31, (1.0, 1.0))
    assert devs[:30].count(0) == 16 and devs[:30].count(1) == 14 and devs[30] == 1
    # -ngl 20: the first 11 layers stay on the CPU (-1), 10 and 9+output on the workers
    devs = layer_devices(30, 20, (1.0, 1.0))
    assert devs.count(-1) == 11 and devs[:30].count(0) == 10 and devs[:30].count(1) == 9 and devs[30] == 1
    # a zero share gets no layer
    assert 0 not in layer_devices(18, 19, (0.0, 1.0))


def test_shares_follow_free_memory_and_bad_shares_are_named() -> None:
    shares = shares_by_free([Node("a:1", 12 << 30), Node("b:1", 4 << 30), Node("local", 0)])
    assert shares == (75.0, 25.0, 0.0)
    assert parse_shares("1, 2,3", 3) == (1.0, 2.0, 3.0)
    with pytest.raises(ConfigError, match="needs 3"):
        parse_shares("1,2", 3)
    with pytest.raises(ConfigError, match="numbers"):
        parse_shares("1,x,2", 3)
    with pytest.raises(ConfigError, match="≥ 0"):
        parse_shares("0,0,0", 3)


def test_endpoints_and_free_memory_by_hand() -> None:
    assert parse_endpoints("10.0.0.2:50052, [::1]:7000") == ("10.0.0.2:50052", "[::1]:7000")
    for bad, why in (
        ("10.0.0.2", "host:port"),
        ("h:99999", "outside"),
        ("h:abc", "not a number"),
        ("a:1,a:1", "twice"),
    ):
        with pytest.raises(ConfigError, match=why):
            parse_endpoints(bad)
    assert parse_worker_free(["10.0.0.2:50052=1.5"]) == {"10.0.0.2:50052": 3 << 29}
    with pytest.raises(ConfigError, match="HOST:PORT=GiB"):
        parse_worker_free(["10.0.0.2:50052"])


def test_spec_validation_and_argv() -> None:
    spec = EngineSpec(model="/m.gguf", rpc=("10.0.0.2:50052", "10.0.0.3:50052"), tensor_split=(2.0, 1.0))
    argv = llama_server_argv("llama-server", spec)
    assert argv[argv.index("--rpc") + 1] == "10.0.0.2:50052,10.0.0.3:50052"
    assert argv[argv.index("-ts") + 1] == "2,1"
    with pytest.raises(ConfigError, match="3 shares for 1 RPC worker"):
        EngineSpec(model="/m.gguf", rpc=("h:1",), tensor_split=(1.0, 1.0, 1.0))
    with pytest.raises(ConfigError, match="host:port"):
        EngineSpec(model="/m.gguf", rpc=("nohost",))
    assert EngineSpec.from_json(spec.to_json()) == spec


def test_probe_names_unreachable_silent_and_mismatched_workers() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    assert probe(f"127.0.0.1:{port}").state == "unreachable"
    # a listener that never answers: the shape of a worker serving another engine
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    p = probe(f"127.0.0.1:{silent.getsockname()[1]}", timeout_s=0.3)
    silent.close()
    assert p.state == "busy" and "one engine at a time" in p.message()
    # a server answering hello with protocol 6.1.0
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def answer() -> None:
        conn, _ = srv.accept()
        conn.recv(64)
        conn.sendall((28).to_bytes(8, "little") + bytes([6, 1, 0]) + bytes(25))
        conn.close()

    threading.Thread(target=answer, daemon=True).start()
    p = probe(f"127.0.0.1:{srv.getsockname()[1]}")
    srv.close()
    assert p.state == "mismatch" and p.version == "6.1.0" and "rebuild rpc-server" in p.message()


LOG_LOST = [
    (0.0, "0.00.014.155 I cmn  common_param:   - RPC0    : 10.0.0.2:50052 (24151 MiB, 24151 MiB free)"),
    (0.1, "0.00.264.466 I load_tensors: RPC0[10.0.0.2:50052] model buffer size =    33.82 MiB"),
    (0.5, "0.01.024.891 I srv  llama_server: model loaded"),
    (9.0, "/x/ggml-rpc.cpp:566: Remote RPC server crashed or returned malformed response"),
]


def test_rpc_failures_are_named_per_node() -> None:
    spec = EngineSpec(model="/m.gguf", rpc=("10.0.0.2:50052", "10.0.0.3:50052"), tensor_split=(1.0, 1.0))
    events = parse_lines(LOG_LOST)
    assert next(e for e in events if e.phase == "model_buffer").device == "RPC0[10.0.0.2:50052]"
    down = [Probe("10.0.0.2:50052", "ready", "7.0.0"), Probe("10.0.0.3:50052", "unreachable", error="refused")]
    d = rpc_failure(spec, events, down)
    assert d.kind == "rpc_lost" and "10.0.0.3:50052" in d.title and "while serving" in d.title
    assert "10.0.0.2:50052" not in d.title
    d = rpc_failure(
        spec, events + parse_lines([(10.0, "/x/ggml-rpc.cpp:547: Failed to connect to 10.0.0.3:50052")]), []
    )
    assert d.kind == "rpc_unreachable" and "10.0.0.3:50052" in d.title and "restart policy" in d.title
    mismatch = parse_lines(
        [
            (0.0, "/x/ggml-rpc.cpp:550: RPC handshake failed for 10.0.0.2:50052"),
            (0.0, "E RPC server version mismatch: 8.0.1"),
        ]
    )
    d = rpc_failure(spec, mismatch, [])
    assert d.kind == "rpc_mismatch" and "10.0.0.2:50052" in d.title and "8.0.1" in d.title
