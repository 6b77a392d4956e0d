"""Read a GGUF file's header with the ``gguf`` package into a plain, cacheable record.

``GGUFReader`` parses every key, tokenizer arrays included, which takes seconds for a
262k-token vocabulary; the store therefore caches ``GGUFInfo`` by (path, size, mtime).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from zoe_panel.errors import InvalidModelError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
# Arrays worth keeping (per-layer hyper-parameters); token lists and merges are skipped.
_KEEP_ARRAY_SUFFIXES = (
    "head_count_kv",
    "head_count",
    "sliding_window_pattern",
    "feed_forward_length",
    "full_attention_interval",
)
_BLOCK_RE = re.compile(r"^blk\.(\d+)\.")


@dataclass(frozen=True)
class GGUFInfo:
    """What the panel needs from a GGUF header; JSON-serialisable."""

    path: str
    file_size_bytes: int
    gguf_version: int
    metadata: dict[str, Any]
    tensor_count: int
    tensor_bytes: int
    tensor_data_end: int  # absolute offset of the last tensor byte; > file size = truncated
    parameter_count: int
    layer_tensor_bytes: list[int] = field(default_factory=list)  # weights per block (blk.N.)
    other_tensor_bytes: int = 0  # token embedding, output, norms
    output_tensor_bytes: int = 0
    token_embd_bytes: int = 0

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "unknown"))

    def arch_key(self, suffix: str, default: Any = None) -> Any:
        return self.metadata.get(f"{self.architecture}.{suffix}", default)

    @property
    def is_truncated(self) -> bool:
        return self.tensor_data_end > self.file_size_bytes

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GGUFInfo:
        return cls(**data)


def check_magic(path: Path, display: str | None = None) -> int:
    """Return the GGUF version after checking magic and version; raise InvalidModelError."""
    name = display or path.name
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except OSError as e:
        raise InvalidModelError(f"{name}: cannot read the file ({e.strerror})") from None
    if len(head) < 8 or head[:4] != GGUF_MAGIC:
        raise InvalidModelError(
            f"{name}: not a GGUF file (it does not start with the 'GGUF' magic); "
            "convert it with llama.cpp's convert_hf_to_gguf.py or download a .gguf build"
        )
    version = int.from_bytes(head[4:8], "little")
    if version not in SUPPORTED_VERSIONS:
        raise InvalidModelError(f"{name}: GGUF version {version} is not supported (expected 2 or 3)")
    return version


def read_gguf(path: Path, display: str | None = None) -> GGUFInfo:
    """Parse a GGUF header and tensor table. Any parse failure becomes InvalidModelError."""
    name = display or path.name
    version = check_magic(path, name)
    size = path.stat().st_size
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path), "r")
        metadata = _scalar_fields(reader)
        tensors = [(t.name, int(t.n_elements), int(t.n_bytes), int(t.data_offset)) for t in reader.tensors]
    except InvalidModelError:
        raise
    except Exception as e:  # noqa: BLE001 - the reader raises many types on malformed input
        why = _short(e)
        if "reshape" in why or "smaller than" in why or "out of bounds" in why:
            raise InvalidModelError(
                f"{name}: truncated or corrupt: its tensor data does not fit in the file ({why}); download it again"
            ) from None
        raise InvalidModelError(f"{name}: the GGUF header does not parse ({why})") from None
    return _summarise(path, size, version, metadata, tensors)


def _short(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:200]


def _scalar_fields(reader: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, fld in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        is_array = len(fld.types) > 1
        if is_array:
            if name.endswith(_KEEP_ARRAY_SUFFIXES) or name == "general.languages":
                out[name] = _plain(fld.contents())
            elif name == "tokenizer.ggml.tokens":
                out["tokenizer.ggml.tokens.count"] = len(fld.data)
            continue
        if name == "tokenizer.chat_template":
            out[name] = str(fld.contents())
            continue
        out[name] = _plain(fld.contents())
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _summarise(
    path: Path, size: int, version: int, metadata: dict[str, Any], tensors: list[tuple[str, int, int, int]]
) -> GGUFInfo:
    n_blocks = 0
    for name, *_ in tensors:
        m = _BLOCK_RE.match(name)
        if m:
            n_blocks = max(n_blocks, int(m.group(1)) + 1)
    per_layer = [0] * n_blocks
    other = output = embd = 0
    for name, _n, nbytes, _off in tensors:
        m = _BLOCK_RE.match(name)
        if m:
            per_layer[int(m.group(1))] += nbytes
            continue
        other += nbytes
        if name.startswith("output."):
            output += nbytes
        elif name.startswith("token_embd."):
            embd += nbytes
    end = max((off + nbytes for _n, _e, nbytes, off in tensors), default=0)
    return GGUFInfo(
        path=str(path),
        file_size_bytes=size,
        gguf_version=version,
        metadata=metadata,
        tensor_count=len(tensors),
        tensor_bytes=sum(t[2] for t in tensors),
        tensor_data_end=end,
        parameter_count=sum(t[1] for t in tensors),
        layer_tensor_bytes=per_layer,
        other_tensor_bytes=other,
        output_tensor_bytes=output,
        token_embd_bytes=embd,
    )
