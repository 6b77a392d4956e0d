"""Benchmark 13: what a remote fit check reads. Each Hub file's header is read over HTTP Range
requests from a local Hub-like server (tests/hub_server.py); the bytes read are compared with the
header's exact size (where the tensor data starts: the least any reader must fetch), the baseline,
and with the file (what downloading it to look would cost)."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from common import GEMMA, MIB, ROOT, SMOL, Table, scratch_runtime

sys.path.insert(0, str(ROOT / "tests"))
from hub_server import FakeHub

from zoe_panel.models.gguf_header import parse_file
from zoe_panel.models.remote import HubFile, read_header
from zoe_panel.models.synth import SynthShape, extend_vocab, read_tokenizer, write_header_only

LLAMA7B = SynthShape(n_layer=32, n_embd=4096, n_head=32, n_head_kv=32, n_ff=11008, name="llama-7b-like")
LLAMA8B = SynthShape(n_layer=32, n_embd=4096, n_head=32, n_head_kv=8, n_ff=14336, name="llama-8b-like")


def trimmed(tok: dict, n: int) -> dict:  # type: ignore[type-arg]
    """The first ``n`` entries of a tokenizer's arrays: a 32k SentencePiece vocabulary from Gemma's."""
    out = dict(tok)
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
        if key in tok:
            values, types = tok[key]
            out[key] = (values[:n], types)
    return out


def main(smoke: bool = False) -> Table:
    rt = scratch_runtime()
    root = rt.store.root
    tmp = Path(tempfile.mkdtemp(prefix="zoe-b13-"))
    gemma_tok = read_tokenizer(root / GEMMA)
    smol_tok = read_tokenizer(root / SMOL)
    files = {"SmolLM2-135M Q4_1": root / SMOL, "Gemma-3-270M Q4_K_M": root / GEMMA}
    if not smoke:
        files["7B, Llama-2-like (32k SentencePiece tokens), Q4_K"] = write_header_only(
            tmp / "7b.gguf", LLAMA7B, trimmed(gemma_tok, 32000)
        )
        files["8B, Llama-3-like (128k BPE tokens), Q4_K"] = write_header_only(
            tmp / "8b.gguf", LLAMA8B, extend_vocab(smol_tok, 128256 - 49152)
        )
        files["7B with Gemma's 262k tokens, Q4_K"] = write_header_only(tmp / "7bg.gguf", LLAMA7B, gemma_tok)
    hub = FakeHub()
    for path in files.values():
        hub.add("org/bench", path.name, path)
    server, url = hub.serve()
    t = Table(
        "13. Remote fit check: bytes read per header over HTTP Range requests (local Hub-like server)",
        [
            "file",
            "file size (MiB)",
            "header size (MiB), the baseline",
            "bytes read (MiB)",
            "range requests",
            "ratio read / header",
            "ms",
        ],
    )
    try:
        for label, path in files.items():
            header_size = parse_file(str(path)).header_bytes
            t0 = time.perf_counter()
            _, size, got, requests = read_header(HubFile("org/bench", path.name), endpoint=url)
            ms = (time.perf_counter() - t0) * 1000
            t.add(
                label,
                round(size / MIB, 1),
                round(header_size / MIB, 3),
                round(got / MIB, 3),
                requests,
                round(got / header_size, 3),
                round(ms, 1),
            )
    finally:
        server.shutdown()
        rt.close()
    t.notes.append(
        "The reader fetches 256 KiB first, then blocks that double up to 1 MiB, and stops once the tensor table "
        "is parsed: it reads at most one block past the header. The 7B and 8B files are sparse files of their "
        "full size with a real header (metadata, token list, tensor table) over a hole: the header is what "
        "matters here, and nothing else is ever fetched."
    )
    return t


if __name__ == "__main__":
    print(main().markdown())
