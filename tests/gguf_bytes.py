"""Hand-made GGUF bytes for hostile-input tests: the layout of ggml/docs/gguf.md, no library, so a
test can write counts and lengths that no writer would."""

from __future__ import annotations

import struct

STRING, ARRAY, UINT32, UINT64 = 8, 9, 4, 10


def s(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def kv_str(key: str, value: str) -> bytes:
    return s(key) + struct.pack("<I", STRING) + s(value)


def kv_u32(key: str, value: int) -> bytes:
    return s(key) + struct.pack("<I", UINT32) + struct.pack("<I", value)


def kv_array(key: str, etype: int, count: int, payload: bytes = b"") -> bytes:
    return s(key) + struct.pack("<IIQ", ARRAY, etype, count) + payload


def tensor(name: str, dims: tuple[int, ...] = (32,), ttype: int = 0, offset: int = 0) -> bytes:
    out = s(name) + struct.pack("<I", len(dims))
    out += b"".join(struct.pack("<Q", d) for d in dims)
    return out + struct.pack("<IQ", ttype, offset)


def gguf(
    kvs: list[bytes], tensors: list[bytes], *, n_kv: int | None = None, n_tensors: int | None = None, data: bytes = b""
) -> bytes:
    head = b"GGUF" + struct.pack(
        "<IQQ", 3, len(tensors) if n_tensors is None else n_tensors, len(kvs) if n_kv is None else n_kv
    )
    body = head + b"".join(kvs) + b"".join(tensors)
    pad = (-len(body)) % 32
    return body + b"\0" * pad + data


def small_model(arch: str = "llama", tensors: list[bytes] | None = None, blocks: int = 1) -> bytes:
    """A header that parses: architecture, block count, one f32 tensor of 32 values per block."""
    kvs = [kv_str("general.architecture", arch), kv_u32(f"{arch}.block_count", blocks)]
    ts = tensors if tensors is not None else [tensor(f"blk.{i}.w", (32,), 0, i * 128) for i in range(blocks)]
    return gguf(kvs, ts, data=b"\0" * 128 * max(1, len(ts)))
