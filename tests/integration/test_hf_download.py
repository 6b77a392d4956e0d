"""Hugging Face repositories into the library as folders vLLM serves, from a local server that
speaks the Hub's download API (no model hub is reachable here): only what vLLM loads is fetched
(the index's shards, not a second consolidated copy, no pickles, no README), each file checked
against the Hub's sha256 and its header; a corrupt, truncated or unservable repo leaves nothing."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import zoe_cli as cli
from hf_folder import LLAMA_CONFIG, make_folder, write_safetensors
from hub_server import FakeHub

from zoe_panel.engine.base import EngineSpec
from zoe_panel.errors import DownloadError
from zoe_panel.models.fit import GIB, MemoryBudget
from zoe_panel.models.fit_vllm import vllm_estimate
from zoe_panel.models.hf_download import download_repo, plan_repo, planned_model
from zoe_panel.models.hf_model import SOURCE_FILE, read_hf_model
from zoe_panel.models.store import ModelStore

SPEC = EngineSpec(model="/models/Tiny-AWQ.hf", flavor="vllm", ctx=1024, kv_space_mib=256)
CPU = MemoryBudget("cpu", 16 * GIB)
AWQ = {**LLAMA_CONFIG, "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128}}


def add_folder(hub: FakeHub, repo: str, folder: Path, **faults: object) -> None:
    for p in sorted(folder.iterdir()):
        hub.add(repo, p.name, p, **(faults if p.name.endswith(".safetensors") else {}))


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[FakeHub, str]]:
    h = FakeHub()
    good = tmp_path / "src" / "Tiny-AWQ"
    make_folder(good, AWQ, shards=2)
    (good / "README.md").write_text("# a model card")
    add_folder(h, "org/Tiny-AWQ", good)
    # the same weights once more in Mistral's layout, and a pickle: neither is fetched
    h.add("org/Tiny-AWQ", "consolidated.safetensors", good / "model-00001-of-00002.safetensors")
    (good.parent / "pytorch_model.bin").write_bytes(b"\x80\x04 a pickle")
    h.add("org/Tiny-AWQ", "pytorch_model.bin", good.parent / "pytorch_model.bin")
    h.add("org/Tiny-AWQ", "onnx/model.onnx", good / "config.json")  # a sub-folder vLLM does not read
    corrupt = tmp_path / "src" / "Corrupt"
    make_folder(corrupt)
    write_safetensors(corrupt / "model.safetensors", {"w": ("BF16", [64, 64])}, noise=True)
    add_folder(h, "org/Corrupt", corrupt, corrupt=True)
    cut = tmp_path / "src" / "Cut"
    make_folder(cut)
    write_safetensors(cut / "model.safetensors", {"w": ("BF16", [64, 64])}, cut=100)  # its sha is of the cut file
    add_folder(h, "org/Cut", cut)
    pickled = tmp_path / "src" / "Pickled"
    pickled.mkdir(parents=True)
    (pickled / "config.json").write_text(json.dumps(LLAMA_CONFIG))
    add_folder(h, "org/Pickled", pickled)
    h.add("org/Pickled", "pytorch_model.bin", good.parent / "pytorch_model.bin")
    h.add("org/Only-GGUF", "model.gguf", good / "config.json")
    server, url = h.serve()
    yield h, url
    server.shutdown()


def test_a_repo_is_fetched_as_a_servable_folder(hub: tuple[FakeHub, str], tmp_path: Path) -> None:
    h, url = hub
    store = ModelStore(tmp_path / "models", tmp_path / "cache.json")
    plan = plan_repo("org/Tiny-AWQ", endpoint=url)
    names = sorted(f.name for f in plan.files)
    assert names == sorted(
        ["config.json", "tokenizer.json", "model.safetensors.index.json",
         "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    )  # fmt: skip
    assert (plan.architecture, plan.quant_method) == ("LlamaForCausalLM", "awq")
    before = vllm_estimate(planned_model(plan), SPEC, CPU)  # from the config and the listed sizes
    seen: list[tuple[int, int]] = []
    folder = download_repo(store, plan, endpoint=url, margin_bytes=0, progress=lambda d, t: seen.append((d, t)))
    assert folder == store.root.resolve() / "Tiny-AWQ.hf"
    m = read_hf_model(folder)
    assert m.quant_method == "awq" and len(m.weights) == 2
    # the fit before the download is the fit after it (the shards' headers aside)
    after = vllm_estimate(m, SPEC, CPU)
    assert (
        before.n_ctx == after.n_ctx > 0 and abs(before.weights_bytes - after.weights_bytes) < 0.05 * after.weights_bytes
    )
    assert json.loads((folder / SOURCE_FILE).read_text())["repo"] == "org/Tiny-AWQ"
    assert not (folder / ".cache").exists() and not (store.root / ".downloads").exists()
    assert seen[-1] == (plan.size, plan.size)
    fetched = [r for r in h.requests if r.startswith("GET /org/Tiny-AWQ/resolve/")]
    assert not [r for r in fetched if "consolidated" in r or ".bin" in r or "README" in r or "onnx" in r], fetched
    # the library lists it for vLLM, and a second download of the same name is refused
    assert [e.name for e in store.hf_entries() if e.ok] == ["Tiny-AWQ.hf"]
    with pytest.raises(DownloadError, match="already in the library"):
        download_repo(store, plan, endpoint=url, margin_bytes=0)


@pytest.mark.parametrize(
    ("repo", "message"),
    [
        ("org/Corrupt", "checksum mismatch"),
        ("org/Cut", "truncated or corrupt"),
    ],
)
def test_a_bad_file_keeps_nothing(hub: tuple[FakeHub, str], tmp_path: Path, repo: str, message: str) -> None:
    _, url = hub
    store = ModelStore(tmp_path / "models", tmp_path / "cache.json")
    with pytest.raises(DownloadError, match=message):
        download_repo(store, plan_repo(repo, endpoint=url), endpoint=url, margin_bytes=0)
    assert not list(store.root.iterdir())  # no folder, no staging


@pytest.mark.parametrize(
    ("repo", "message"),
    [
        ("org/Pickled", "only pickled PyTorch weights"),
        ("org/Only-GGUF", "holds GGUF files"),
        ("org/Missing", "not found"),
        ("not a repo", "not a repository id"),
    ],
)
def test_unservable_repos_are_refused_before_any_weights(hub: tuple[FakeHub, str], repo: str, message: str) -> None:
    h, url = hub
    with pytest.raises(DownloadError, match=message):
        plan_repo(repo, endpoint=url)
    assert not [r for r in h.requests if r.startswith("GET") and (".bin" in r or ".safetensors" in r)]


def test_cli_downloads_and_lists_it(hub: tuple[FakeHub, str], zoe_home: Path) -> None:
    _, url = hub
    os.environ["HF_ENDPOINT"] = url
    try:
        done = cli(zoe_home, "vllm", "--download", "org/Tiny-AWQ", "--name", "tiny-awq", "--json")
        assert (zoe_home / "models" / "tiny-awq.hf" / "config.json").is_file(), done.stderr[-1500:]
        listed = cli(zoe_home, "models", "--json")
        rows = {r["name"]: r for r in json.loads(listed.stdout)}
        assert rows["tiny-awq.hf"]["ok"] and rows["tiny-awq.hf"]["quantization"] == "awq 4-bit"
        assert rows["tiny-awq.hf"]["source"] == "org/Tiny-AWQ"
        bad = cli(zoe_home, "vllm", "--download", "org/Pickled")
        assert bad.returncode != 0 and "only pickled PyTorch weights" in bad.stderr
    finally:
        os.environ.pop("HF_ENDPOINT", None)
    shutil.rmtree(zoe_home / "models" / "tiny-awq.hf")
