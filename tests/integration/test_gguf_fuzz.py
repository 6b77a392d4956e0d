"""Fuzz the GGUF reading path with truncated and mutated headers of the real SmolLM2 file:
the panel never crashes, it reports the file as invalid (or reads it, if a mutation was harmless)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zoe_panel.errors import InvalidModelError
from zoe_panel.models.store import ModelStore

pytestmark = pytest.mark.integration
HEAD = 3 * 1024 * 1024  # metadata, the 49k-token vocabulary and the tensor table end near 1.8 MB
FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def head(request: pytest.FixtureRequest) -> bytes:
    smollm2 = request.getfixturevalue("smollm2")
    with Path(smollm2).open("rb") as f:
        return f.read(HEAD)


def check(tmp_path: Path, data: bytes) -> None:
    models = tmp_path / "models"
    models.mkdir(exist_ok=True)
    target = models / "fuzzed.gguf"
    target.write_bytes(data)
    store = ModelStore(models, tmp_path / "cache.json")
    entry = store.entry(target)  # must not raise, whatever the bytes
    assert entry.error or entry.info is not None
    if entry.info is not None and not entry.error:
        assert entry.info.tensor_data_end <= len(data)
    try:
        store.resolve("fuzzed.gguf")
    except InvalidModelError:
        pass
    target.unlink()
    (tmp_path / "cache.json").unlink(missing_ok=True)


@FUZZ
@given(cut=st.integers(min_value=0, max_value=HEAD))
def test_truncated_headers(tmp_path: Path, head: bytes, cut: int) -> None:
    check(tmp_path, head[:cut])


@FUZZ
@given(
    flips=st.lists(
        st.tuples(st.integers(min_value=0, max_value=65_535), st.integers(min_value=0, max_value=255)),
        min_size=1,
        max_size=8,
    )
)
def test_mutated_headers(tmp_path: Path, head: bytes, flips: list[tuple[int, int]]) -> None:
    data = bytearray(head)
    for pos, value in flips:
        data[pos] = value
    check(tmp_path, bytes(data))
