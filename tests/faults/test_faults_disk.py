"""Fault suite, disk: the disk fills up during a download, an upload and a quantization (a small tmpfs)."""

from __future__ import annotations

from pathlib import Path

import pytest
from faultkit import report
from hub_server import FakeHub

from zoe_panel.errors import DownloadError, ModelStoreError
from zoe_panel.models import download as dl
from zoe_panel.models.library import add_upload
from zoe_panel.models.store import ModelStore

pytestmark = [pytest.mark.faults, pytest.mark.integration]


def test_disk_full_during_download_and_upload(small_fs: Path, smollm2: Path) -> None:
    hub = FakeHub()
    hub.add("org/smol-GGUF", smollm2.name, smollm2)
    server, url = hub.serve()
    store = ModelStore(small_fs / "models", small_fs / "cache.json")
    filler = small_fs / "filler.bin"

    def fill(done: int, total: int) -> None:  # another program takes the space mid-download
        if done > 2_000_000 and not filler.exists():
            try:
                filler.write_bytes(b"\0" * 60_000_000)
            except OSError:
                pass

    try:
        (model,) = dl.list_gguf("org/smol-GGUF", endpoint=url)
        with pytest.raises(DownloadError) as down:
            dl.download(store, "org/smol-GGUF", model, endpoint=url, margin_bytes=0, progress=fill)
    finally:
        server.shutdown()
    left_down = [p.name for p in (small_fs / "models").rglob("*") if p.is_file()]
    filler.unlink()
    filler.write_bytes(b"\0" * 50_000_000)

    def chunks():  # type: ignore[no-untyped-def]
        with smollm2.open("rb") as f:
            while block := f.read(1 << 22):
                yield block

    with pytest.raises(ModelStoreError) as up:
        add_upload(store, "upload.gguf", chunks())
    left_up = [p.name for p in (small_fs / "models").rglob("*") if p.is_file()]
    ok = not left_down and not left_up and "disk filled up" in str(down.value) and "disk filled up" in str(up.value)
    report(
        "disk full during a download and during an upload (130 MB tmpfs)",
        "no partial file, a clear message",
        f"download: '{str(down.value)[:55]}…', files left {left_down}; upload: '{str(up.value)[:45]}…', "
        f"files left {left_up}",
        ok,
    )
    assert ok


def test_disk_full_during_quantization(small_fs: Path, smollm2: Path) -> None:
    from zoe_panel.models import quantize
    from zoe_panel.models.synth import SynthShape, read_tokenizer, write_synthetic

    store = ModelStore(small_fs / "models", small_fs / "cache.json")
    src = store.ensure_root() / "synth-F16.gguf"  # ~91 MB F16, ~25 MB as Q4_K_M
    write_synthetic(src, SynthShape(n_layer=12, n_embd=384, n_head=6, n_head_kv=2, n_ff=1536), read_tokenizer(smollm2))
    filler = small_fs / "filler.bin"

    def fill(fraction: float, detail: str) -> None:  # another program takes the rest of the disk mid-run
        if fraction > 0.1 and not filler.exists():
            with filler.open("wb") as f:
                try:
                    while True:
                        f.write(b"\0" * (1 << 20))
                        f.flush()
                except OSError:
                    pass

    with pytest.raises(ModelStoreError) as err:
        quantize.run(store, src.name, "Q4_K_M", progress=fill)
    left = sorted(p.name for p in store.root.rglob("*") if p.is_file())
    ok = filler.exists() and left == [src.name] and "disk filled up during quantization" in str(err.value)
    report(
        "disk full during quantization (130 MB tmpfs)",
        "no partial output, a clear message",
        f"'{str(err.value)[:60]}…', files left {left}",
        ok,
    )
    assert ok
