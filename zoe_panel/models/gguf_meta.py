"""A GGUF file's header as a plain, cacheable record (``GGUFInfo``).

The header is read by the bounded reader of gguf_header.py in a child process, so no file, however
made, can take more than READ_TIMEOUT_S or READ_ADDRESS_SPACE_MIB; the store caches the record by
(path, size, mtime).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from zoe_panel.errors import InvalidModelError
from zoe_panel.models.gguf_header import Header

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
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
    # Weight matrices llama.cpp's CPU backend may repack into its own layout (a second copy in
    # RAM beside the mapped file): bytes by ggml type name, as [rows a multiple of 8, of 4].
    matrix_bytes: dict[str, list[int]] = field(default_factory=dict)

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


# What reading one header may cost: real headers (a 262k-token vocabulary) take well under both.
READ_TIMEOUT_S = 10.0
READ_ADDRESS_SPACE_MIB = 96


def read_gguf(path: Path, display: str | None = None) -> GGUFInfo:
    """Parse a GGUF header and tensor table in a child process with an address-space limit and a
    timeout (a hostile file can only fail, never stall or swell the panel). Any failure becomes
    InvalidModelError."""
    name = display or path.name
    version = check_magic(path, name)
    size = path.stat().st_size
    header = _parse_in_child(path, name)
    if not header.tensors:
        raise InvalidModelError(f"{name}: the file holds no tensors (a header without weights is not a model)")
    return summarise(path, size, version, header)


def _parse_in_child(path: Path, name: str) -> Header:
    import json
    import subprocess
    import sys

    argv = [sys.executable, "-m", "zoe_panel.models.gguf_header", str(path)]
    argv += [str(READ_ADDRESS_SPACE_MIB), str(int(READ_TIMEOUT_S))]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=READ_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise InvalidModelError(
            f"{name}: reading its header took over {READ_TIMEOUT_S:.0f} s; not a usable GGUF"
        ) from None
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        why = "it ran out of its memory limit" if done.returncode else "no answer"
        raise InvalidModelError(f"{name}: the GGUF header does not parse ({why})") from None
    if "error" in result:
        raise InvalidModelError(f"{name}: the GGUF header does not parse: {result['error']}")
    return Header.from_json(result["ok"])


def _short(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:200]


def summarise(path: Path | str, size: int, version: int, header: Header) -> GGUFInfo:
    """The panel's record of a header. Per-layer bytes are indexed by block number only within the
    model's ``block_count`` (a tensor named blk.100000000.x must not size a list)."""
    metadata = header.metadata
    arch = str(metadata.get("general.architecture", ""))
    declared = metadata.get(f"{arch}.block_count")
    n_blocks = declared if isinstance(declared, int) and 0 <= declared <= 100_000 else None
    per_block: dict[int, int] = {}
    other = output = embd = 0
    matrices: dict[str, list[int]] = {}
    for t in header.tensors:
        if t.n_dims in (2, 3) and (t.name.startswith("blk.") or t.name == "output.weight"):
            entry = matrices.setdefault(t.type_name, [0, 0])
            entry[0] += t.n_bytes if t.rows % 8 == 0 else 0
            entry[1] += t.n_bytes if t.rows % 4 == 0 else 0
        m = _BLOCK_RE.match(t.name)
        if m:
            i = int(m.group(1))
            limit = n_blocks if n_blocks is not None else len(header.tensors)
            if i >= limit:
                what = f"block_count {n_blocks}" if n_blocks is not None else f"{len(header.tensors)} tensors"
                raise InvalidModelError(f"{Path(path).name}: tensor {t.name} names block {i}, beyond {what}")
            per_block[i] = per_block.get(i, 0) + t.n_bytes
            continue
        other += t.n_bytes
        if t.name.startswith("output."):
            output += t.n_bytes
        elif t.name.startswith("token_embd."):
            embd += t.n_bytes
    count = n_blocks if n_blocks is not None else (max(per_block) + 1 if per_block else 0)
    return GGUFInfo(
        path=str(path),
        file_size_bytes=size,
        gguf_version=version,
        metadata=metadata,
        tensor_count=len(header.tensors),
        tensor_bytes=sum(t.n_bytes for t in header.tensors),
        tensor_data_end=max((t.offset + t.n_bytes for t in header.tensors), default=0),
        parameter_count=sum(t.n_elements for t in header.tensors),
        layer_tensor_bytes=[per_block.get(i, 0) for i in range(count)],
        other_tensor_bytes=other,
        output_tensor_bytes=output,
        token_embd_bytes=embd,
        matrix_bytes=matrices,
    )
