"""Will it fit, before downloading: a Hub GGUF's header read with HTTP Range requests.

Only the header travels: the metadata and the tensor table, a few hundred KiB to a few MiB (the
token list dominates). The resolve URL comes from huggingface_hub (``hf_hub_url``, HF_ENDPOINT),
with its headers (``build_hf_headers``, HF_TOKEN); redirects to the Hub's storage are followed
(httpx drops the token when the host changes). A split model's metadata comes from its first part,
its tensor table from every part's header. Headers are cached in the state folder by repo,
revision, file and size.

The parser is the bounded one of gguf_header (every count checked against the file's size), fed
by a reader that fetches growing ranges and refuses to read past ``MAX_HEADER_BYTES``.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from zoe_panel.errors import DownloadError
from zoe_panel.jsonfile import read_cache, write_json_atomic
from zoe_panel.models.gguf_header import Header, HeaderError, metadata_json, parse
from zoe_panel.models.gguf_meta import GGUFInfo, summarise
from zoe_panel.models.store import SPLIT_RE, merge_split

HF_SCHEME = "hf://"
FIRST_BLOCK = 256 * 1024  # most headers of small models fit; larger ones double from here
MAX_BLOCK = 1024 * 1024  # at most 1 MiB read past the header; a 6 MiB header takes 8 requests
MAX_HEADER_BYTES = 64 * 1024 * 1024  # a 262k-token vocabulary's header is ~6 MiB
CACHE_ENTRIES = 256


@dataclass(frozen=True)
class HubFile:
    repo_id: str
    filename: str
    revision: str = "main"

    @property
    def uri(self) -> str:
        return f"{HF_SCHEME}{self.repo_id}/{self.filename}" + (f"@{self.revision}" if self.revision != "main" else "")


def parse_hf_uri(uri: str, revision: str | None = None) -> HubFile:
    """``hf://ORG/REPO/path/FILE.gguf`` (optionally ``@REVISION``) -> HubFile."""
    if not uri.startswith(HF_SCHEME):
        raise DownloadError(f"{uri!r} is not an hf:// address (hf://ORG/REPO/FILE.gguf)")
    rest = uri[len(HF_SCHEME) :]
    rev = revision
    if "@" in rest:
        rest, _, at = rest.rpartition("@")
        rev = rev or at
    parts = rest.split("/")
    if len(parts) < 3 or not all(parts) or ".." in parts:
        raise DownloadError(f"{uri!r}: expected hf://ORG/REPO/FILE.gguf")
    repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:])
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id):
        raise DownloadError(f"{repo_id!r} is not a repository id (owner/name)")
    if not filename.lower().endswith(".gguf"):
        raise DownloadError(f"{filename}: only .gguf files have a header to read")
    return HubFile(repo_id, filename, rev or "main")


class RangeReader:
    """``read(n)`` over HTTP Range requests, in blocks that double up to MAX_BLOCK. Each request
    is streamed and closed once its block arrived, so a server that ignores the end of the range
    costs one block, not the file; one that ignores Range altogether is refused."""

    def __init__(self, url: str, headers: dict[str, str], client: httpx.Client, *, limit: int = MAX_HEADER_BYTES):
        self.url = url
        self.headers = headers
        self.client = client
        self.limit = limit
        self.pos = 0
        self.size: int | None = None
        self.bytes_read = 0
        self.requests = 0
        self._block = FIRST_BLOCK

    def _fetch(self, start: int, length: int) -> bytes:
        if start + length > self.limit:
            raise DownloadError(
                f"the header is larger than {self.limit >> 20} MiB: not a header the panel reads remotely"
            )
        end = start + length - 1
        headers = {**self.headers, "Range": f"bytes={start}-{end}"}
        self.requests += 1
        with self.client.stream("GET", self.url, headers=headers) as r:
            if r.status_code in (401, 403):
                raise DownloadError("the Hub refused the request: the repository is gated or private (set HF_TOKEN)")
            if r.status_code == 404:
                raise DownloadError("file not found on the Hub (check the repository, file name and revision)")
            if r.status_code == 416:
                return b""
            if r.status_code == 200:
                raise DownloadError(
                    "the server ignores HTTP Range requests: the header cannot be read without downloading the "
                    "whole file (download it, then the Models page shows its fit)"
                )
            if r.status_code != 206:
                raise DownloadError(f"reading the header: HTTP {r.status_code} from {httpx.URL(self.url).host}")
            total = re.search(r"/(\d+)\s*$", r.headers.get("Content-Range", ""))
            if total and self.size is None:
                self.size = int(total[1])
            chunks = []
            got = 0
            for chunk in r.iter_bytes():
                chunks.append(chunk)
                got += len(chunk)
                if got >= length:
                    break
        data = b"".join(chunks)[:length]
        self.bytes_read += len(data)
        return data

    def probe(self) -> int:
        """Fetch the first block; returns the file's size (from Content-Range)."""
        self._first = self._fetch(0, FIRST_BLOCK)
        self.pos = len(self._first)
        if self.size is None:
            raise DownloadError("the server did not say the file's size (no Content-Range)")
        return self.size

    def reader(self) -> Callable[[int], bytes]:
        """``read(n)``: at most n bytes, like a file's (the parser drops what a skip over-reads);
        the ranges behind it are fetched in growing blocks and buffered here."""
        buf = [self._first]

        def read(n: int) -> bytes:
            if not buf[0]:
                self._block = min(MAX_BLOCK, self._block * 2)
                want = max(n, self._block)
                if self.size is not None:
                    want = min(want, self.size - self.pos)
                if want <= 0:
                    return b""
                buf[0] = self._fetch(self.pos, want)
                self.pos += len(buf[0])
            data, buf[0] = buf[0][:n], buf[0][n:]
            return data

        return read


def read_header(
    hub: HubFile, *, endpoint: str | None = None, token: str | None = None, client: httpx.Client | None = None
) -> tuple[Header, int, int, int]:
    """(header, file size, bytes read, requests) of one Hub file."""
    from huggingface_hub import hf_hub_url

    # Not re-exported under mypy's strict rules; the function has lived here since 0.x.
    from huggingface_hub.utils._headers import build_hf_headers

    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
    url = hf_hub_url(hub.repo_id, hub.filename, revision=hub.revision, endpoint=endpoint)
    headers = build_hf_headers(token=token or os.environ.get("HF_TOKEN") or None)
    own = client is None
    client = client or httpx.Client(follow_redirects=True, timeout=httpx.Timeout(30.0, connect=10.0))
    try:
        rr = RangeReader(url, dict(headers), client)
        size = rr.probe()
        try:
            header = parse(rr.reader(), size)
        except HeaderError as e:
            raise DownloadError(f"{hub.filename}: the GGUF header does not parse: {e}") from None
        header.metadata = metadata_json(header.metadata)
        return header, size, rr.bytes_read, rr.requests
    except httpx.HTTPError as e:
        raise DownloadError(f"reading {hub.filename}'s header: {type(e).__name__}: {e}") from None
    finally:
        if own:
            client.close()


@dataclass(frozen=True)
class RemoteInfo:
    info: GGUFInfo
    bytes_read: int
    requests: int
    cached: bool = False


class RemoteHeaders:
    """Remote headers with a cache in the state folder (bounded: the newest CACHE_ENTRIES)."""

    def __init__(self, cache_file: Path) -> None:
        self.cache_file = cache_file
        self._lock = threading.Lock()

    def info(
        self,
        hub: HubFile,
        *,
        parts: list[tuple[str, int]] | None = None,
        endpoint: str | None = None,
        token: str | None = None,
    ) -> RemoteInfo:
        """GGUFInfo of a Hub file, or of a split model from its first part (``parts``: every
        part's name and size, from the repo listing; found by listing the repo when not given)."""
        if SPLIT_RE.match(Path(hub.filename).name) and parts is None:
            parts = self._split_parts(hub, endpoint, token)
        names = [n for n, _ in parts] if parts else [hub.filename]
        key = "|".join([endpoint or os.environ.get("HF_ENDPOINT") or "hub", hub.repo_id, hub.revision, *names])
        with self._lock:
            cache = read_cache(self.cache_file, dict)
            hit = cache.get(key)
        if isinstance(hit, dict) and "info" in hit:
            return RemoteInfo(GGUFInfo.from_json(hit["info"]), 0, 0, cached=True)
        infos = []
        total_read = total_requests = 0
        with httpx.Client(follow_redirects=True, timeout=httpx.Timeout(30.0, connect=10.0)) as client:
            for name in names:
                header, size, got, n = read_header(
                    HubFile(hub.repo_id, name, hub.revision), endpoint=endpoint, token=token, client=client
                )
                total_read += got
                total_requests += n
                infos.append(summarise(f"{HF_SCHEME}{hub.repo_id}/{name}", size, header.version, header))
        info = merge_split(infos) if len(infos) > 1 else infos[0]
        with self._lock:
            cache = read_cache(self.cache_file, dict)
            cache[key] = {"info": info.to_json(), "bytes_read": total_read}
            while len(cache) > CACHE_ENTRIES:
                cache.pop(next(iter(cache)))
            try:
                self.cache_file.parent.mkdir(parents=True, exist_ok=True)
                write_json_atomic(self.cache_file, cache)
            except OSError:
                pass  # only costs a re-read next time
        return RemoteInfo(info, total_read, total_requests)

    @staticmethod
    def _split_parts(hub: HubFile, endpoint: str | None, token: str | None) -> list[tuple[str, int]]:
        from zoe_panel.models.download import list_gguf

        for model in list_gguf(hub.repo_id, revision=hub.revision, endpoint=endpoint, token=token):
            names = [f.name for f in model.files]
            if hub.filename in names:
                return [(f.name, f.size) for f in model.files]
        raise DownloadError(f"{hub.filename}: no such file in {hub.repo_id}")


def fit_summary(info: GGUFInfo, estimate: Any, best: dict[str, int]) -> dict[str, Any]:
    """What the Models page shows beside a Hub file: the verdict and the largest contexts."""
    return {
        "verdict": estimate.verdict.value,
        "total_bytes": estimate.total_bytes,
        "at_ready_bytes": estimate.at_ready_bytes,
        "available_bytes": estimate.available_bytes,
        "max_context": best,
        "architecture": info.architecture,
    }
