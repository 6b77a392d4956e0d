"""A bounded GGUF header reader: nothing is allocated before its size is checked against the
bytes that are left.

Why not gguf-py's ``GGUFReader`` here: it trusts the counts in the file. A 124-byte file claiming
an array of 2^62 elements made it loop to 5.6 GB; a tensor named ``blk.100000000.w`` made the
panel size a per-layer list by that number. This reader streams the header once, through any
``read(n)`` source (a file, or HTTP Range requests for a Hub file not yet downloaded), checks
every count and length against the source's size, skips token lists without keeping them, and
keeps only what the panel uses: scalar keys, per-layer arrays, the token count and the tensor
table. The GGUF layout (spec: ggml/docs/gguf.md) and the type tables come from the gguf package.

``python -m zoe_panel.models.gguf_header FILE`` prints the header as JSON; the store runs it in a
child process with an address-space limit and a timeout (see gguf_meta.read_gguf).
"""

from __future__ import annotations

import json
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


def _gguf_constants() -> Any:
    """gguf's constants module (the GGUF value types, ggml block sizes), loaded by itself: the
    package's __init__ imports numpy and its whole reader, 300 ms a child process need not pay."""
    if "gguf.constants" in sys.modules:
        return sys.modules["gguf.constants"]
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("gguf")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the gguf package is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "constants.py"
    mod_spec = importlib.util.spec_from_file_location("_zoe_gguf_constants", path)
    assert mod_spec is not None and mod_spec.loader is not None
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


_C = _gguf_constants()
GGML_QUANT_SIZES: dict[Any, tuple[int, int]] = _C.GGML_QUANT_SIZES
GGUFValueType = _C.GGUFValueType
MAGIC = b"GGUF"
VERSIONS = (2, 3)
MAX_KEY = 65_535  # the spec's limit on key length
MAX_TENSOR_NAME = 256  # ggml's is 64; leave room for forks, refuse the absurd
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_COUNT = 1 << 24  # keys or tensors: real models have hundreds to a few thousand
MAX_KEPT_STRING = 1 << 20  # chat templates are tens of KiB; longer strings are skipped, not kept
MAX_KEPT_ARRAY = 1 << 16  # per-layer arrays have one entry per block
KEEP_ARRAY_SUFFIXES = (
    "head_count_kv",
    "head_count",
    "sliding_window_pattern",
    "feed_forward_length",
    "full_attention_interval",
)
COUNTED_ARRAYS = ("tokenizer.ggml.tokens", "tokenizer.ggml.merges")
_SCALARS: dict[int, tuple[str, int]] = {
    GGUFValueType.UINT8: ("<B", 1),
    GGUFValueType.INT8: ("<b", 1),
    GGUFValueType.UINT16: ("<H", 2),
    GGUFValueType.INT16: ("<h", 2),
    GGUFValueType.UINT32: ("<I", 4),
    GGUFValueType.INT32: ("<i", 4),
    GGUFValueType.FLOAT32: ("<f", 4),
    GGUFValueType.BOOL: ("<?", 1),
    GGUFValueType.UINT64: ("<Q", 8),
    GGUFValueType.INT64: ("<q", 8),
    GGUFValueType.FLOAT64: ("<d", 8),
}


class HeaderError(ValueError):
    """The bytes are not a GGUF header the panel accepts; the message says where and why."""


@dataclass(frozen=True)
class Tensor:
    name: str
    n_elements: int
    n_bytes: int
    offset: int  # absolute, from the start of the file
    ggml_type: int = -1  # the ggml type id (GGMLQuantizationType)
    rows: int = 0  # ne[1]: llama.cpp repacks a CPU matrix only when this is a multiple of 4 or 8
    n_dims: int = 0

    @property
    def type_name(self) -> str:
        try:
            return str(_C.GGMLQuantizationType(self.ggml_type).name)
        except ValueError:
            return f"type{self.ggml_type}"


@dataclass
class Header:
    version: int
    metadata: dict[str, Any] = field(default_factory=dict)
    tensors: list[Tensor] = field(default_factory=list)
    header_bytes: int = 0  # where the tensor data starts (aligned): what a remote read needs

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "metadata": self.metadata,
            "tensors": [
                [t.name, t.n_elements, t.n_bytes, t.offset, t.ggml_type, t.rows, t.n_dims] for t in self.tensors
            ],
            "header_bytes": self.header_bytes,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Header:
        return cls(
            int(data["version"]),
            dict(data["metadata"]),
            [Tensor(str(t[0]), *(int(v) for v in t[1:7])) for t in data["tensors"]],
            int(data.get("header_bytes", 0)),
        )


class _Stream:
    """Buffered reads from ``read(n)`` with a position and the total size to check against."""

    def __init__(self, read: Callable[[int], bytes], size: int, chunk: int = 1 << 16) -> None:
        self._read = read
        self.size = size
        self.pos = 0  # of the next byte to hand out
        self._buf = b""
        self._off = 0  # of that byte in _buf (slicing from an offset: no copy of the rest per read)
        self._chunk = chunk

    @property
    def left(self) -> int:
        return self.size - self.pos

    def need(self, n: int, what: str) -> None:
        if n < 0 or n > self.left:
            raise HeaderError(
                f"{what} needs {n:,} bytes at offset {self.pos:,}, but only {max(0, self.left):,} are left"
            )

    def _fill(self, n: int, what: str) -> None:
        have = len(self._buf) - self._off
        if have >= n:
            return
        parts = [self._buf[self._off :]]
        while have < n:
            more = self._read(max(self._chunk, n - have))
            if not more:
                raise HeaderError(f"{what}: the data ends at offset {self.pos + have:,}")
            parts.append(more)
            have += len(more)
        self._buf, self._off = b"".join(parts), 0

    def take(self, n: int, what: str) -> bytes:
        self.need(n, what)
        self._fill(n, what)
        out = self._buf[self._off : self._off + n]
        self._off += n
        self.pos += n
        return out

    def skip(self, n: int, what: str) -> None:
        self.need(n, what)
        have = len(self._buf) - self._off
        if n <= have:
            self._off += n
            self.pos += n
            return
        rest = n - have
        self.pos += have
        self._buf, self._off = b"", 0
        while rest > 0:
            got = self._read(min(rest, 1 << 20))
            if not got:
                raise HeaderError(f"{what}: the data ends at offset {self.pos:,}")
            got = got[:rest]
            rest -= len(got)
            self.pos += len(got)

    def skip_strings(self, count: int, what: str) -> tuple[int, int]:
        """Skip ``count`` length-prefixed strings (a 262k-token vocabulary): the hot loop of a
        header, so it reads lengths straight from the buffer. Returns their total length and the
        heap one copy of the long ones takes in a C++ program (what the engine's tokenizer holds:
        libstdc++ keeps up to 15 bytes inside the string, a longer one is a malloc chunk)."""
        unpack_from = struct.unpack_from
        total = heap = 0
        for j in range(count):
            if len(self._buf) - self._off < 8:
                self._fill(8, f"{what}[{j}]")
            (n,) = unpack_from("<Q", self._buf, self._off)
            self._off += 8
            self.pos += 8
            total += n
            if n > 15:
                heap += max(32, (n + 24) // 16 * 16)  # n + NUL + 8-byte header, in 16-byte steps
            if n <= len(self._buf) - self._off:
                self._off += n
                self.pos += n
            else:
                self.skip(n, f"{what}[{j}]")
        return total, heap

    def unpack(self, fmt: str, size: int, what: str) -> Any:
        return struct.unpack(fmt, self.take(size, what))[0]

    def u32(self, what: str) -> int:
        return int(self.unpack("<I", 4, what))

    def u64(self, what: str) -> int:
        return int(self.unpack("<Q", 8, what))

    def string(self, what: str, limit: int) -> str | None:
        """A string, or None when longer than ``limit`` (skipped: length checked, not kept)."""
        n = self.u64(what)
        if n > limit:
            self.skip(n, what)
            return None
        return self.take(n, what).decode("utf-8", "replace")


def parse(read: Callable[[int], bytes], size: int) -> Header:
    """Parse a GGUF header from ``read``; ``size`` is the whole file's size. Raises HeaderError."""
    s = _Stream(read, size)
    if s.take(4, "the magic") != MAGIC:
        raise HeaderError("not a GGUF file (it does not start with the 'GGUF' magic)")
    version = s.u32("the version")
    if version not in VERSIONS:
        raise HeaderError(f"GGUF version {version} is not supported (expected 2 or 3)")
    n_tensors = s.u64("the tensor count")
    n_kv = s.u64("the key count")
    # Each key takes at least 8 (length) + 1 + 4 (type) + 1 bytes; each tensor entry at least 8 + 1
    # + 4 + 8 + 4 + 8: a count that cannot fit in what is left is a lie, refused before any loop.
    if n_kv > min(MAX_COUNT, s.left // 14):
        raise HeaderError(f"{n_kv:,} metadata keys cannot fit in a {size:,}-byte file")
    if n_tensors > min(MAX_COUNT, s.left // 33):
        raise HeaderError(f"{n_tensors:,} tensors cannot fit in a {size:,}-byte file")
    meta: dict[str, Any] = {}
    for i in range(n_kv):
        key = s.string(f"key {i}", MAX_KEY)
        if key is None:
            raise HeaderError(f"key {i} is longer than {MAX_KEY} bytes")
        vtype = s.u32(f"the type of {key}")
        value = _value(s, key, vtype)
        if value is not _SKIPPED:
            meta[key] = value
    alignment = meta.get("general.alignment", 32)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1) or alignment > 1 << 20:
        raise HeaderError(f"general.alignment {alignment!r} is not a power of two up to 1 MiB")
    raw = [_tensor_info(s, i) for i in range(n_tensors)]
    data_start = -(-s.pos // alignment) * alignment
    tensors = [Tensor(name, n, nbytes, data_start + off, tt, rows, nd) for name, n, nbytes, off, tt, rows, nd in raw]
    return Header(version, meta, tensors, data_start)


_SKIPPED = object()


def _value(s: _Stream, key: str, vtype: int) -> Any:
    if vtype in _SCALARS:
        fmt, size = _SCALARS[vtype]
        return s.unpack(fmt, size, key)
    if vtype == GGUFValueType.STRING:
        text = s.string(key, MAX_KEPT_STRING)
        return _SKIPPED if text is None else text
    if vtype != GGUFValueType.ARRAY:
        raise HeaderError(f"{key}: unknown value type {vtype}")
    etype = s.u32(f"{key}: element type")
    count = s.u64(f"{key}: element count")
    if etype == GGUFValueType.STRING:
        if count > s.left // 8:
            raise HeaderError(f"{key}: {count:,} strings cannot fit in the {s.left:,} bytes left")
        if not (key.endswith(KEEP_ARRAY_SUFFIXES) or key == "general.languages"):
            text_bytes, heap = s.skip_strings(count, key)
            return _Count(count, text_bytes, heap) if key in COUNTED_ARRAYS else _SKIPPED
        if count > MAX_KEPT_ARRAY:
            raise HeaderError(f"{key}: {count:,} entries is not a per-layer array")
        return [s.string(f"{key}[{j}]", MAX_KEY) or "" for j in range(count)]
    if etype not in _SCALARS:
        raise HeaderError(f"{key}: arrays of type {etype} are not supported")
    fmt, size = _SCALARS[etype]
    s.need(count * size, f"{key}: {count:,} elements")
    if not (key.endswith(KEEP_ARRAY_SUFFIXES) or key == "general.languages"):
        s.skip(count * size, key)
        return _SKIPPED
    if count > MAX_KEPT_ARRAY:
        raise HeaderError(f"{key}: {count:,} entries is not a per-layer array")
    data = s.take(count * size, key)
    return list(struct.unpack(f"<{count}{fmt[1]}", data))


class _Count(int):
    """Marks the token list (and the merges), kept as its length and total text bytes only."""

    text_bytes: int
    heap_bytes: int

    def __new__(cls, count: int, text_bytes: int = 0, heap_bytes: int = 0) -> _Count:
        obj = super().__new__(cls, count)
        obj.text_bytes = text_bytes
        obj.heap_bytes = heap_bytes
        return obj


def _tensor_info(s: _Stream, i: int) -> tuple[str, int, int, int, int, int, int]:
    name = s.string(f"tensor {i}'s name", MAX_TENSOR_NAME)
    if name is None:
        raise HeaderError(f"tensor {i}'s name is longer than {MAX_TENSOR_NAME} bytes")
    n_dims = s.u32(f"{name}: dimensions")
    if not 1 <= n_dims <= MAX_DIMS:
        raise HeaderError(f"tensor {name}: {n_dims} dimensions (1..{MAX_DIMS} allowed)")
    n = 1
    rows = 1
    for d in range(n_dims):
        dim = s.u64(f"{name}: dimension {d}")
        if d == 1:
            rows = dim
        n *= dim
        if n > 1 << 50:
            raise HeaderError(f"tensor {name}: more than 2^50 elements")
    ttype = s.u32(f"{name}: type")
    try:
        block, type_size = GGML_QUANT_SIZES[ttype]
    except KeyError:
        raise HeaderError(f"tensor {name}: unknown ggml type {ttype}") from None
    if n % block:
        raise HeaderError(f"tensor {name}: {n} elements is not a multiple of its block size {block}")
    offset = s.u64(f"{name}: offset")
    if offset > 1 << 50:
        raise HeaderError(f"tensor {name}: offset {offset:,} is not plausible")
    return name, n, n // block * type_size, offset, int(ttype), rows, n_dims


def metadata_json(meta: dict[str, Any]) -> dict[str, Any]:
    """The token list becomes ``tokenizer.ggml.tokens.count`` (and ``.bytes``, its text), as the
    rest of the panel reads it; the merges likewise."""
    out = {}
    for k, v in meta.items():
        if isinstance(v, _Count):
            out[f"{k}.count"] = int(v)
            out[f"{k}.bytes"] = v.text_bytes
            out[f"{k}.heap"] = v.heap_bytes
        else:
            out[k] = v
    return out


def parse_file(path: str) -> Header:
    import os

    with open(path, "rb") as f:
        header = parse(f.read, os.fstat(f.fileno()).st_size)
    header.metadata = metadata_json(header.metadata)
    return header


def limit_self(address_space_mib: int, cpu_s: int) -> None:
    """In the child: cap what parsing may add to the address space, and its CPU time."""
    import resource

    vm = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                vm = int(line.split()[1]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm + address_space_mib * 1024 * 1024,) * 2)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))


if __name__ == "__main__":
    if len(sys.argv) > 3:
        limit_self(int(sys.argv[2]), int(sys.argv[3]))
    try:
        print(json.dumps({"ok": parse_file(sys.argv[1]).to_json()}))
    except MemoryError:
        print(json.dumps({"error": "reading its header needs more memory than any real model's header"}))
    except HeaderError as e:
        print(json.dumps({"error": str(e)}))
    except OSError as e:
        print(json.dumps({"error": f"cannot read the file ({e.strerror})"}))
