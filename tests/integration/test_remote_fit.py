"""Will it fit before downloading: a Hub file's header over HTTP Range requests, against a local
Hub-like server (tests/hub_server.py) serving the real models, a split model and a sparse 7B-sized
file with a real header. Nothing is downloaded; the estimate equals the local one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import engine_runtime
from hub_server import FakeHub

from zoe_panel.errors import DownloadError
from zoe_panel.models.demo import GEMMA3_270M, SMOLLM2
from zoe_panel.models.remote import HubFile
from zoe_panel.models.synth import SynthShape, read_tokenizer, write_header_only, write_synthetic
from zoe_panel.runtime import Runtime

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SMOL, GEMMA = SMOLLM2.filename, GEMMA3_270M.filename
LLAMA7B = SynthShape(n_layer=32, n_embd=4096, n_head=32, n_head_kv=32, n_ff=11008, name="llama-7b-like")


@pytest.fixture(scope="module")
def hub(smollm2: Path, gemma3: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeHub, str]]:
    tmp_path = tmp_path_factory.mktemp("hub")
    h = FakeHub()
    h.add("org/smol-GGUF", SMOL, smollm2)
    h.add("org/gemma-GGUF", GEMMA, gemma3)
    # a 7B-sized file (3.9 GiB, sparse): a real header over a hole
    tok = read_tokenizer(gemma3)
    h.add("org/big-GGUF", "llama-7b-like-Q4_K.gguf", write_header_only(tmp_path / "7b.gguf", LLAMA7B, tok))
    for i in (1, 2):
        part = tmp_path / f"part{i}.gguf"
        write_synthetic(
            part, SynthShape(n_layer=2, n_embd=64, n_head=2, n_head_kv=1, n_ff=128), read_tokenizer(smollm2)
        )
        h.add("org/split-GGUF", f"tiny-{i:05d}-of-00002.gguf", part)
    h.add("org/norange-GGUF", SMOL, smollm2, no_range=True)
    server, url = h.serve()
    yield h, url
    server.shutdown()


@pytest.fixture
def rt(settings_with_model, gemma3: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:  # type: ignore[no-untyped-def]
    with engine_runtime(settings_with_model, engine=False) as runtime:
        yield runtime


def test_a_hub_file_is_estimated_from_its_header_alone(rt: Runtime, hub: tuple[FakeHub, str], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    h, url = hub
    monkeypatch.setenv("HF_ENDPOINT", url)
    remote, best, source = rt.estimate_anywhere(f"hf://org/smol-GGUF/{SMOL}", ctx=4096, cache_ram_mib=0)
    local, best_local, _ = rt.estimate_anywhere(SMOL, ctx=4096, cache_ram_mib=0)
    assert remote.kv_bytes == local.kv_bytes and remote.weights_bytes == local.weights_bytes
    assert remote.at_ready_bytes == local.at_ready_bytes and remote.verdict == local.verdict and best == best_local
    served = h.repos["org/smol-GGUF"][SMOL].bytes_sent
    assert source["kind"] == "hub" and 0 < source["bytes_read"] <= served < 2 << 20  # a 94 MiB file, < 2 MiB read
    assert all("Range: bytes=" in r for r in h.requests if "/resolve/" in r and r.startswith("GET"))
    again = rt.estimate_anywhere(f"hf://org/smol-GGUF/{SMOL}", ctx=4096)[2]
    assert again["cached"] and h.repos["org/smol-GGUF"][SMOL].bytes_sent == served  # from the cache


def test_a_7b_header_and_gemma_read_only_their_headers(rt: Runtime, hub: tuple[FakeHub, str], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    h, url = hub
    monkeypatch.setenv("HF_ENDPOINT", url)
    big, best, source = rt.estimate_anywhere("hf://org/big-GGUF/llama-7b-like-Q4_K.gguf", ctx=4096)
    size = h.repos["org/big-GGUF"]["llama-7b-like-Q4_K.gguf"].path.stat().st_size
    assert big.weights_bytes > 3.5 * 2**30 and source["bytes_read"] < 12 << 20 < size  # a few MiB of 3.9 GiB
    assert big.kv_bytes == 32 * 2 * 4096 * 4096 * 2  # 32 layers, K and V, 4096 cells, 4096 wide, f16
    assert set(best) == {"f16", "q8_0", "q4_0"}
    gemma = rt.estimate_anywhere(f"hf://org/gemma-GGUF/{GEMMA}", ctx=4096)[2]
    assert gemma["bytes_read"] < 8 << 20


def test_a_split_model_takes_metadata_from_the_first_part_and_tensors_from_all(
    rt: Runtime, hub: tuple[FakeHub, str], monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    _, url = hub
    monkeypatch.setenv("HF_ENDPOINT", url)
    est, _, source = rt.estimate_anywhere("hf://org/split-GGUF/tiny-00001-of-00002.gguf", ctx=1024)
    one = rt.remote_headers.info(HubFile("org/split-GGUF", "tiny-00001-of-00002.gguf"))
    assert one.cached and one.info.tensor_count == 2 * 20  # both parts' tensors
    assert one.info.matrix_bytes["F16"][0] == 2 * 147456
    assert est.weights_bytes == one.info.tensor_bytes and source["requests"] >= 2


def test_clear_errors_for_a_server_without_range_a_private_repo_and_a_missing_file(
    rt: Runtime, hub: tuple[FakeHub, str], monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    h, url = hub
    monkeypatch.setenv("HF_ENDPOINT", url)
    with pytest.raises(DownloadError, match="ignores HTTP Range"):
        rt.estimate_anywhere(f"hf://org/norange-GGUF/{SMOL}", ctx=2048)
    assert h.repos["org/norange-GGUF"][SMOL].bytes_sent < 4 << 20  # stopped, not downloaded
    with pytest.raises(DownloadError, match="not found"):
        rt.estimate_anywhere("hf://org/smol-GGUF/nothing.gguf", ctx=2048)
    with pytest.raises(DownloadError, match="hf://ORG/REPO/FILE.gguf"):
        rt.estimate_anywhere("hf://org-only", ctx=2048)
    h.token = "sekrit"
    try:
        with pytest.raises(DownloadError, match="gated or private"):
            rt.estimate_anywhere(f"hf://org/gemma-GGUF/{GEMMA}", ctx=2048)
        monkeypatch.setenv("HF_TOKEN", "sekrit")
        assert rt.estimate_anywhere(f"hf://org/gemma-GGUF/{GEMMA}", ctx=2048)[2]["bytes_read"] > 0
    finally:
        h.token = None


def test_cli_estimates_a_hub_file_and_a_file_outside_the_library(
    settings_with_model, hub: tuple[FakeHub, str], smollm2: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    _, url = hub
    env = {**os.environ, "ZOE_HOME": str(settings_with_model.home), "HF_ENDPOINT": url}

    def cli(*args: str) -> dict:  # type: ignore[type-arg]
        done = subprocess.run(
            [sys.executable, "-m", "zoe_panel", "estimate", *args, "--ctx", "4096", "--json"],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
        )
        assert done.returncode in (0, 3), done.stderr
        return json.loads(done.stdout)

    remote = cli(f"hf://org/smol-GGUF/{SMOL}")
    local = cli(SMOL)
    outside_dir = tmp_path / "elsewhere"
    outside_dir.mkdir()
    outside = outside_dir / "copy.gguf"
    os.link(smollm2, outside)
    elsewhere = cli(str(outside))
    for key in ("kv_bytes", "weights_bytes", "at_ready_bytes", "verdict", "max_context"):
        assert remote[key] == local[key] == elsewhere[key], key
    assert remote["source"]["kind"] == "hub" and remote["source"]["bytes_read"] > 0
    assert elsewhere["source"] == {"kind": "file", "path": str(outside.resolve()), "read_only": True}
    assert sorted(p.name for p in (settings_with_model.home / "models").iterdir()) == [SMOL]  # nothing added
