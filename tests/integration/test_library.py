"""The model library for real: huggingface_hub against a local Hub, uploads, add/delete/verify,
quantization loaded in the real engine, presets, the client check, and bad input everywhere."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import engine_runtime, require
from hub_server import FakeHub

from zoe_panel.chat import ChatParams
from zoe_panel.endpoint import client_check
from zoe_panel.engine.apikey import new_api_key
from zoe_panel.engine.binary import find_llama_server
from zoe_panel.errors import BinaryNotFound, DownloadError, InvalidModelError, ModelStoreError
from zoe_panel.models import download as dl
from zoe_panel.models.library import add_file, add_upload, delete, verify
from zoe_panel.models.presets import Preset
from zoe_panel.models.synth import SynthShape, read_tokenizer, write_synthetic
from zoe_panel.runtime import Runtime

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SMOL = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture
def rt(settings_with_model) -> Iterator[Runtime]:  # type: ignore[no-untyped-def]
    with engine_runtime(settings_with_model, engine=False) as runtime:
        yield runtime


@pytest.fixture
def hub(smollm2: Path, tmp_path: Path) -> Iterator[tuple[FakeHub, str]]:
    h = FakeHub()
    h.add("org/smol-GGUF", SMOL, smollm2, cut_after=25_000_000)  # past the client's 10 MiB chunks
    # a split model: two real GGUF files named as llama.cpp's gguf-split names its parts
    tok = read_tokenizer(smollm2)
    for i in (1, 2):
        part = tmp_path / f"part{i}.gguf"
        write_synthetic(part, SynthShape(n_layer=2, n_embd=64, n_head=2, n_head_kv=1, n_ff=128), tok, seed=i)
        h.add("org/smol-GGUF", f"tiny-00{i:03d}-of-00002.gguf", part)
    h.add("org/smol-GGUF", "README.md", smollm2.parent / SMOL)  # not a GGUF: never listed
    bad = tmp_path / "bad.gguf"
    shutil.copyfile(smollm2, bad)
    h.add("org/broken-GGUF", "model-Q4_1.gguf", bad, corrupt=True)
    server, url = h.serve()
    yield h, url
    server.shutdown()


def test_list_groups_split_files_and_names_quants(hub: tuple[FakeHub, str]) -> None:
    _, url = hub
    models = dl.list_gguf("org/smol-GGUF", endpoint=url)
    labels = {m.label: m for m in models}
    assert set(labels) == {SMOL, "tiny.gguf (2/2 parts)"}
    assert labels[SMOL].quant == "Q4_1" and labels[SMOL].size == 98_362_432
    assert len(labels["tiny.gguf (2/2 parts)"].files) == 2
    with pytest.raises(DownloadError, match="not a repository id"):
        dl.list_gguf("../etc/passwd", endpoint=url)
    with pytest.raises(DownloadError, match="not found"):
        dl.list_gguf("org/nothing-here", endpoint=url)


def test_download_resumes_after_a_cut_and_verifies(
    rt: Runtime, hub: tuple[FakeHub, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    h, url = hub
    (rt.store.root / SMOL).unlink()  # the fixture put one there
    model = next(m for m in dl.list_gguf("org/smol-GGUF", endpoint=url) if m.label == SMOL)
    seen: list[int] = []
    rehashed: list[Path] = []
    real_sha256_file = dl.sha256_file
    monkeypatch.setattr(dl, "sha256_file", lambda path: rehashed.append(path) or real_sha256_file(path))
    paths = dl.download(
        rt.store,
        "org/smol-GGUF",
        model,
        endpoint=url,
        margin_bytes=0,
        progress=lambda done, total: seen.append(done),
        verify_log=rt.verify_log,
    )
    assert paths == [rt.store.root / SMOL] and SMOL in rt.store.names()
    # hashed while it arrived, across the cut: no second pass over the file, and recorded as checked
    assert rehashed == []
    rec = rt.verify_log.get(paths[0])
    assert rec is not None and rec["ok"] and rec["sha256"] == [real_sha256_file(paths[0])] == [model.files[0].sha256]
    assert any("Range: bytes=20971520-" in r for r in h.requests), h.requests  # resumed, not restarted
    assert seen[-1] == model.size and seen == sorted(seen)
    assert not (rt.store.root / dl.STAGING).exists()
    with pytest.raises(DownloadError, match="already in the library"):
        dl.download(rt.store, "org/smol-GGUF", model, endpoint=url, margin_bytes=0)


def test_split_model_downloads_as_one_library_entry(rt: Runtime, hub: tuple[FakeHub, str]) -> None:
    _, url = hub
    model = next(m for m in dl.list_gguf("org/smol-GGUF", endpoint=url) if m.label.startswith("tiny"))
    dl.download(rt.store, "org/smol-GGUF", model, endpoint=url, margin_bytes=0)
    entries = {e.name: e for e in rt.store.entries()}
    assert "tiny-00001-of-00002.gguf" in entries and "tiny-00002-of-00002.gguf" not in entries
    e = entries["tiny-00001-of-00002.gguf"]
    assert e.ok and e.size_bytes == sum(f.size for f in model.files)
    parts = [rt.store.info(p) for p in rt.store.split_parts(e.path)]
    assert e.info is not None and e.info.tensor_count == sum(p.tensor_count for p in parts) > parts[0].tensor_count
    assert e.info.tensor_bytes == sum(p.tensor_bytes for p in parts)
    (rt.store.root / "tiny-00002-of-00002.gguf").unlink()
    assert "missing tiny-00002-of-00002.gguf" in rt.store.entry(rt.store.root / "tiny-00001-of-00002.gguf").error


def test_wrong_checksum_keeps_nothing(rt: Runtime, hub: tuple[FakeHub, str]) -> None:
    _, url = hub
    before = sorted(p.name for p in rt.store.root.iterdir())
    (model,) = dl.list_gguf("org/broken-GGUF", endpoint=url)
    with pytest.raises(DownloadError, match="checksum mismatch.*deleted"):
        dl.download(rt.store, "org/broken-GGUF", model, endpoint=url, margin_bytes=0, verify_log=rt.verify_log)
    assert rt.verify_log.load() == {}
    assert sorted(p.name for p in rt.store.root.iterdir()) == before


def test_cancel_keeps_nothing_and_space_is_checked_first(rt: Runtime, hub: tuple[FakeHub, str]) -> None:
    _, url = hub
    (rt.store.root / SMOL).unlink()
    model = next(m for m in dl.list_gguf("org/smol-GGUF", endpoint=url) if m.label == SMOL)
    cancel = threading.Event()
    with pytest.raises(dl.DownloadCancelled):
        dl.download(
            rt.store,
            "org/smol-GGUF",
            model,
            endpoint=url,
            margin_bytes=0,
            cancel=cancel,
            progress=lambda done, total: cancel.set() if done > 1_000_000 else None,
        )
    assert rt.store.names() == [] and not (rt.store.root / dl.STAGING).exists()
    with pytest.raises(DownloadError, match="not enough disk space"):
        dl.download(rt.store, "org/smol-GGUF", model, endpoint=url, margin_bytes=10**15)


def test_hf_token_and_endpoint_come_from_the_environment(
    rt: Runtime, hub: tuple[FakeHub, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    h, url = hub
    h.token = "hf_test_token"
    monkeypatch.setenv("HF_ENDPOINT", url)
    with pytest.raises(DownloadError):
        dl.list_gguf("org/smol-GGUF")
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    assert dl.list_gguf("org/smol-GGUF")
    out = subprocess.run(
        [sys.executable, "-m", "zoe_panel", "download", "org/smol-GGUF", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "ZOE_HOME": str(rt.settings.home)},
    )
    assert out.returncode == 0 and {r["label"] for r in json.loads(out.stdout)} >= {SMOL}


def test_full_disk_during_download_leaves_no_partial_file(
    small_fs: Path, smollm2: Path, hub: tuple[FakeHub, str]
) -> None:
    _, url = hub
    from zoe_panel.models.store import ModelStore

    store = ModelStore(small_fs / "models", small_fs / "cache.json")
    model = next(m for m in dl.list_gguf("org/smol-GGUF", endpoint=url) if m.label == SMOL)
    filler = small_fs / "filler.bin"

    def fill_once(done: int, total: int) -> None:  # something else takes the space mid-download
        if done > 2_000_000 and not filler.exists():
            with filler.open("wb") as f:
                try:
                    f.write(b"\0" * 60_000_000)
                except OSError:
                    pass

    with pytest.raises(DownloadError, match="disk filled up.*nothing was kept"):
        dl.download(store, "org/smol-GGUF", model, endpoint=url, margin_bytes=0, progress=fill_once)
    leftovers = [p for p in (small_fs / "models").rglob("*") if p.is_file()]
    assert leftovers == [], leftovers


def test_full_disk_during_add_and_upload(small_fs: Path, smollm2: Path) -> None:
    from zoe_panel.models.store import ModelStore

    store = ModelStore(small_fs / "models", small_fs / "cache.json")
    (small_fs / "filler.bin").write_bytes(b"\0" * 50_000_000)
    with pytest.raises(ModelStoreError, match="not enough disk space"):
        add_file(store, smollm2)

    def chunks() -> Iterator[bytes]:
        with smollm2.open("rb") as f:
            while block := f.read(1 << 22):
                yield block

    with pytest.raises(ModelStoreError, match="disk filled up.*nothing was added"):
        add_upload(store, "up.gguf", chunks())  # size unknown to the check: the disk fills mid-write
    assert [p for p in (small_fs / "models").rglob("*") if p.is_file()] == []


def test_upload_and_add_check_the_file_first(rt: Runtime, smollm2: Path, tmp_path: Path) -> None:
    before = sorted(p.name for p in rt.store.root.iterdir())
    with pytest.raises(InvalidModelError, match="not a GGUF file"):
        add_upload(rt.store, "fake.gguf", [b"PK\x03\x04 not a model" * 100])
    truncated = smollm2.read_bytes()[:30_000_000]
    with pytest.raises(InvalidModelError, match="truncated"):
        add_upload(rt.store, "cut.gguf", [truncated])
    with pytest.raises(ModelStoreError, match="end in .gguf"):
        add_upload(rt.store, "model.bin", [b""])
    assert sorted(p.name for p in rt.store.root.iterdir() if not p.name.startswith(".")) == before
    added = add_upload(rt.store, "Модель с пробелом.gguf", [smollm2.read_bytes()])
    assert added.name == "Модель с пробелом.gguf" and rt.store.entry(added).ok
    notgguf = tmp_path / "notes.gguf"
    notgguf.write_text("hello")
    out = subprocess.run(
        [sys.executable, "-m", "zoe_panel", "add", str(notgguf)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "ZOE_HOME": str(rt.settings.home)},
    )
    assert out.returncode == 1 and "not a GGUF file" in out.stderr
    moved_src = tmp_path / "to-move.gguf"
    shutil.copyfile(smollm2, moved_src)
    add_file(rt.store, moved_src, move=True, name="moved.gguf")
    assert not moved_src.exists() and "moved.gguf" in rt.store.names()


@pytest.mark.parametrize("name", ["../x.gguf", "/etc/passwd", "a/../../x.gguf", "sub/../../../x.gguf"])
def test_path_traversal_is_refused(rt: Runtime, name: str) -> None:
    with pytest.raises(ModelStoreError):
        rt.store.resolve(name)
    with pytest.raises(ModelStoreError):
        delete(rt.store, name)


def test_symlinks_out_of_the_folder_are_not_models(rt: Runtime, tmp_path: Path, smollm2: Path) -> None:
    outside = tmp_path / "outside.gguf"
    shutil.copyfile(smollm2, outside)
    (rt.store.root / "link.gguf").symlink_to(outside)
    assert "link.gguf" not in rt.store.names()
    with pytest.raises(ModelStoreError, match="outside the models folder"):
        rt.store.resolve("link.gguf")
    with pytest.raises(ModelStoreError):
        delete(rt.store, "link.gguf")
    assert outside.exists()


def test_verify_flags_a_corrupt_file_and_delete_refuses_the_running_model(rt: Runtime, smollm2: Path) -> None:
    good = verify(rt.store, SMOL, rt.verify_log)
    assert good["ok"] and good["sha256"] == ["b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"]
    assert rt.verify_log.get(rt.store.root / SMOL)["ok"]
    cut = rt.store.root / "cut.gguf"
    cut.write_bytes(smollm2.read_bytes()[:50_000_000])
    bad = verify(rt.store, "cut.gguf", rt.verify_log)
    assert not bad["ok"] and "truncated" in bad["error"]
    assert "truncated" in rt.store.entry(cut).error
    try:
        find_llama_server(rt.settings)
    except BinaryNotFound as e:
        require(False, str(e))
    rt.engine.start(rt.default_spec(SMOL, ctx=1024))
    rt.engine.wait(60, on_poll=rt.recording())
    with pytest.raises(ModelStoreError, match="used by the running engine"):
        delete(rt.store, SMOL, in_use=rt.engine.status().spec.model)
    out = subprocess.run(
        [sys.executable, "-m", "zoe_panel", "delete", SMOL, "--yes"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "ZOE_HOME": str(rt.settings.home)},
    )
    assert out.returncode == 1 and "stop the engine first" in out.stderr and (rt.store.root / SMOL).exists()


def test_quantize_synthetic_f16_and_load_the_result(rt: Runtime, smollm2: Path) -> None:
    try:
        find_llama_server(rt.settings)
    except BinaryNotFound as e:
        require(False, str(e))
    write_synthetic(
        rt.store.root / "synth-F16.gguf",
        SynthShape(n_layer=4, n_embd=256, n_head=8, n_head_kv=2, n_ff=512),
        read_tokenizer(smollm2),
    )
    with pytest.raises(ModelStoreError, match="is Q4_1"):
        rt.start_quantize(SMOL, "Q4_K_M")
    with pytest.raises(ModelStoreError, match="unknown quantization type"):
        rt.start_quantize("synth-F16.gguf", "Q9_X")
    job = rt.jobs.wait(rt.start_quantize("synth-F16.gguf", "Q4_K_M"), 120)
    assert job.state == "done", job.error
    out = job.result
    assert out.name == "synth-Q4_K_M.gguf" and rt.store.entry(out).ok
    info = rt.store.info(out)
    assert (
        info.get("general.file_type") == 15 and out.stat().st_size < (rt.store.root / "synth-F16.gguf").stat().st_size
    )
    rt.engine.start(rt.default_spec(out.name, ctx=1024))
    rt.engine.wait(60, on_poll=rt.recording())
    _, stats = rt.chat_client().complete([{"role": "user", "content": "hi"}], ChatParams(max_tokens=6))
    assert stats.completion_tokens == 6
    rt.engine.stop()
    broke = Runtime(rt.settings.replace(disk_margin_bytes=10**15), sampler=False)
    job = broke.jobs.wait(broke.start_quantize("synth-F16.gguf", "Q8_0"), 60)
    assert job.state == "failed" and "not enough disk space" in job.error
    assert not (rt.store.root / "synth-Q8_0.gguf").exists()


def test_cancelled_quantization_keeps_nothing(rt: Runtime, smollm2: Path) -> None:
    write_synthetic(
        rt.store.root / "big-F16.gguf",
        SynthShape(n_layer=16, n_embd=512, n_head=8, n_head_kv=2, n_ff=2048),
        read_tokenizer(smollm2),
    )
    job = rt.start_quantize("big-F16.gguf", "Q4_K_M")
    while job.active and job.progress < 0.05:
        pass
    rt.jobs.cancel(job.id)
    rt.jobs.wait(job, 60)
    assert job.state == "cancelled" and not (rt.store.root / "big-Q4_K_M.gguf").exists()
    assert not any((rt.store.root / ".staging").glob("*"))


def test_presets_default_to_the_largest_context_that_fits(rt: Runtime) -> None:
    p = rt.preset_for(SMOL)
    assert not p.saved and p.ctx == 8192  # its trained context fits easily here
    rt.presets.save(
        SMOL, Preset(ctx=2048, cache_type_k="q8_0", cache_type_v="q8_0", parallel=2, extra_args=("--mlock",))
    )
    again = rt.preset_for(SMOL)
    assert again.saved and again.ctx == 2048 and again.cache_type_k == "q8_0" and again.extra_args == ("--mlock",)


def test_client_check_with_an_api_key(rt: Runtime) -> None:
    try:
        find_llama_server(rt.settings)
    except BinaryNotFound as e:
        require(False, str(e))
    key = new_api_key()
    keyed = Runtime(rt.settings.replace(engine_api_key=key), sampler=False)
    keyed.engine.start(keyed.default_spec(SMOL, ctx=1024))
    st = keyed.engine.wait(60, on_poll=keyed.recording())
    results = client_check(st.base_url or "", key)
    assert [r.ok for r in results] == [True, True, True, True], results
    assert results[-1].name == "a wrong API key is refused"
    text, _ = keyed.chat_client().complete([{"role": "user", "content": "hi"}], ChatParams(max_tokens=4))
    assert isinstance(text, str)  # the panel's own chat uses the key
    no_key = client_check(st.base_url or "", "")
    assert not no_key[1].ok and "401" in no_key[1].detail
    keyed.engine.stop()
