"""Fault suite, disk: the disk fills up during a download and during an upload (a small tmpfs)."""

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
