"""Hostile GGUF files (issue 13): a few hundred bytes must not cost the panel memory or minutes.

Each case was seen to hurt main before: a tensor named blk.100000000.w made `add` use 830 MB and
the metadata cache 320 MB; blk.1e15 ended in a MemoryError; an array of 2^62 elements made the
reader loop to 5.6 GB in 70 s; a 16 MB string array took 55 s and 3.1 GB. Now each is refused
with a reason, by a bounded reader in a child process (bench/b10_hostile_gguf.py measures them).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from gguf_bytes import ARRAY, STRING, UINT32, gguf, kv_array, kv_str, kv_u32, s, small_model, tensor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zoe_panel.errors import InvalidModelError
from zoe_panel.models.gguf_header import HeaderError, parse
from zoe_panel.models.gguf_meta import read_gguf
from zoe_panel.models.store import ModelStore


def write(tmp_path: Path, data: bytes, name: str = "x.gguf") -> Path:
    (tmp_path / "models").mkdir(exist_ok=True)
    path = tmp_path / "models" / name
    path.write_bytes(data)
    return path


def test_a_sane_small_header_is_read(tmp_path: Path) -> None:
    info = read_gguf(write(tmp_path, small_model(blocks=3)))
    assert info.tensor_count == 3 and info.layer_tensor_bytes == [128, 128, 128]


def test_a_block_number_in_a_tensor_name_never_sizes_anything(tmp_path: Path) -> None:
    data = small_model(tensors=[tensor("blk.100000000.w")])
    assert len(data) < 400
    with pytest.raises(InvalidModelError, match=r"blk\.100000000\.w names block 100000000, beyond block_count 1"):
        read_gguf(write(tmp_path, data))
    huge = small_model(tensors=[tensor("blk.1000000000000000.w")])
    with pytest.raises(InvalidModelError, match="beyond block_count"):
        read_gguf(write(tmp_path, huge, "y.gguf"))


def test_without_block_count_a_block_beyond_the_tensor_count_is_refused(tmp_path: Path) -> None:
    data = gguf([kv_str("general.architecture", "llama")], [tensor("blk.7.w")], data=b"\0" * 128)
    with pytest.raises(InvalidModelError, match="beyond 1 tensors"):
        read_gguf(write(tmp_path, data))


def test_an_array_longer_than_the_file_is_refused_before_any_loop(tmp_path: Path) -> None:
    data = gguf([kv_array("tokenizer.ggml.scores", 6, 1 << 62)], [])
    assert len(data) <= 128
    with pytest.raises(InvalidModelError, match="elements needs .* bytes"):
        read_gguf(write(tmp_path, data))
    strings = gguf([kv_array("tokenizer.ggml.tokens", STRING, 1 << 62)], [])
    with pytest.raises(InvalidModelError, match="strings cannot fit"):
        read_gguf(write(tmp_path, strings, "y.gguf"))


def test_a_16_mb_string_array_is_skipped_not_kept(tmp_path: Path) -> None:
    """Two million tiny strings: read past in one streaming pass; the file holds no tensors."""
    count = 2_000_000
    payload = s("a") * count
    data = gguf(
        [kv_str("general.architecture", "llama"), kv_array("tokenizer.ggml.merges", STRING, count, payload)], []
    )
    assert len(data) > 16 * 10**6
    with pytest.raises(InvalidModelError, match="holds no tensors"):
        read_gguf(write(tmp_path, data))


def test_counts_that_cannot_fit_are_refused(tmp_path: Path) -> None:
    with pytest.raises(HeaderError, match="metadata keys cannot fit"):
        parse_bytes(gguf([], [], n_kv=10**12))
    with pytest.raises(HeaderError, match="tensors cannot fit"):
        parse_bytes(gguf([], [], n_tensors=10**12))
    with pytest.raises(HeaderError, match="dimensions"):
        parse_bytes(gguf([], [tensor("t", (1,) * 9)]))
    with pytest.raises(HeaderError, match="unknown ggml type"):
        parse_bytes(gguf([], [tensor("t", (32,), 999)]))
    with pytest.raises(HeaderError, match="not a multiple of its block size"):
        parse_bytes(gguf([], [tensor("t", (33,), 2)]))


def test_a_header_without_tensors_is_not_a_model(tmp_path: Path) -> None:
    data = gguf([kv_str("general.architecture", "llama"), kv_u32("llama.block_count", 1)], [])
    with pytest.raises(InvalidModelError, match="holds no tensors"):
        read_gguf(write(tmp_path, data))


def test_the_child_cannot_grow_past_its_address_space_limit() -> None:
    code = "from zoe_panel.models.gguf_header import limit_self\nlimit_self(64, 5)\nb = bytearray(300 << 20)\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "MemoryError" in done.stderr


def test_hostile_entries_do_not_grow_the_cache_and_deleting_prunes_it(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models", tmp_path / "cache.json")
    bad = write(tmp_path, small_model(tensors=[tensor("blk.100000000.w")]))
    good = write(tmp_path, small_model(blocks=2), "good.gguf")
    entries = {e.name: e for e in store.entries()}
    assert entries["x.gguf"].error and "beyond block_count" in entries["x.gguf"].error
    assert entries["good.gguf"].ok
    assert (tmp_path / "cache.json").stat().st_size < 20_000
    bad.unlink()
    store.forget(bad)
    assert str(bad.resolve()) not in (tmp_path / "cache.json").read_text()
    assert str(good.resolve()) in (tmp_path / "cache.json").read_text()


def test_the_metadata_cache_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import zoe_panel.models.store as store_mod

    monkeypatch.setattr(store_mod, "MAX_CACHE_ENTRIES", 3)
    store = ModelStore(tmp_path / "models", tmp_path / "cache.json")
    for i in range(6):
        store.info(write(tmp_path, small_model(blocks=1 + i), f"m{i}.gguf"))
    import json

    assert len(json.loads((tmp_path / "cache.json").read_text())) <= 3


def parse_bytes(data: bytes) -> object:
    import io

    f = io.BytesIO(data)
    return parse(f.read, len(data))


FUZZ = settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(
    counts=st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)),
    body=st.binary(max_size=400),
)
def test_any_counts_and_bytes_after_the_magic_parse_or_fail_cleanly(counts: tuple[int, int], body: bytes) -> None:
    import struct

    data = b"GGUF" + struct.pack("<IQQ", 3, *counts) + body
    try:
        parse_bytes(data)
    except HeaderError:
        pass


@FUZZ
@given(
    key=st.sampled_from(["llama.head_count_kv", "tokenizer.ggml.tokens", "x.y", "general.languages"]),
    etype=st.sampled_from([0, 4, 6, 7, 8, 9, 10, 12, 13, 99]),
    count=st.one_of(st.integers(0, 64), st.integers(0, 2**64 - 1)),
    body=st.binary(max_size=600),
)
def test_any_array_parses_or_fails_cleanly(key: str, etype: int, count: int, body: bytes) -> None:
    data = gguf([kv_array(key, etype, count, body)], [])
    try:
        parse_bytes(data)
    except HeaderError:
        pass


def test_nested_arrays_are_refused() -> None:
    with pytest.raises(HeaderError, match="not supported"):
        parse_bytes(gguf([kv_array("x", ARRAY, 1, b"\0" * 16)], []))
    assert UINT32 == 4
