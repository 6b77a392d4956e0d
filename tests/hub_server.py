"""A local server that speaks the part of the Hugging Face Hub API huggingface_hub uses to download:
``GET /api/models/{repo}[/revision/{rev}]?blobs=true`` (file list with sizes and LFS sha256),
``GET /api/models/{repo}/tree/{rev}`` (what snapshot_download lists) and
``HEAD/GET /{repo}/resolve/{rev}/{file}`` (X-Repo-Commit, X-Linked-Etag, X-Linked-Size, Range).

Faults for tests: ``cut_after`` closes the connection after N bytes of the first GET of a file
(the client must resume), ``corrupt`` serves bytes whose sha256 is not the advertised one,
``no_range`` ignores Range headers. Files are read from disk per request (sparse multi-GB files
with a real header work), and ``bytes_sent`` counts what went out.
Loopback only.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubFile:
    path: Path
    sha256: str
    cut_after: int | None = None  # bytes, first GET only
    corrupt: bool = False
    rate: float | None = None  # bytes/s: a link slower than loopback (benchmarks)
    no_range: bool = False  # a server that ignores Range: always the whole file, 200
    gets: int = 0
    bytes_sent: int = 0


@dataclass
class FakeHub:
    repos: dict[str, dict[str, HubFile]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    token: str | None = None  # when set, requests need "Authorization: Bearer <token>"

    def add(self, repo: str, name: str, path: Path, **faults: object) -> HubFile:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        f = HubFile(path, digest, **faults)  # type: ignore[arg-type]
        self.repos.setdefault(repo, {})[name] = f
        return f

    def serve(self) -> tuple[ThreadingHTTPServer, str]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _auth_ok(self) -> bool:
                if hub.token and self.headers.get("Authorization") != f"Bearer {hub.token}":
                    self._json(401, {"error": "Invalid credentials"})
                    return False
                return True

            def _json(self, code: int, data: object, error_code: str = "") -> None:
                body = json.dumps(data).encode()
                self.send_response(code)
                if error_code:  # the real Hub says which kind of 404 it is
                    self.send_header("X-Error-Code", error_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                rng = self.headers.get("Range")
                hub.requests.append(f"GET {self.path}" + (f" Range: {rng}" if rng else ""))
                if self._auth_ok():
                    self._route(send_body=True)

            def do_HEAD(self) -> None:
                hub.requests.append(f"HEAD {self.path}")
                if self._auth_ok():
                    self._route(send_body=False)

            def _route(self, *, send_body: bool) -> None:
                path = unquote(urlparse(self.path).path)
                m = re.match(r"^/api/models/(.+?)/tree/([^/]+)$", path)
                if m and m[1] in hub.repos:
                    return self._tree(m[1])
                m = re.match(r"^/api/models/(.+?)(?:/revision/([^/]+))?$", path)
                if m and m[1] in hub.repos:
                    return self._info(m[1])
                m = re.match(r"^/(.+?)/resolve/([^/]+)/(.+)$", path)
                if m and m[1] in hub.repos and m[3] in hub.repos[m[1]]:
                    return self._file(hub.repos[m[1]][m[3]], send_body)
                repo_known = any(path.startswith(f"/{r}/") or path.startswith(f"/api/models/{r}") for r in hub.repos)
                self._json(
                    404, {"error": "Repository or file not found"}, "EntryNotFound" if repo_known else "RepoNotFound"
                )

            def _info(self, repo: str) -> None:
                siblings = [
                    {
                        "rfilename": name,
                        "size": f.path.stat().st_size,
                        "blobId": f.sha256[:40],
                        "lfs": {"sha256": f.sha256, "size": f.path.stat().st_size, "pointerSize": 134},
                    }
                    for name, f in hub.repos[repo].items()
                ]
                self._json(200, {"id": repo, "modelId": repo, "sha": COMMIT, "private": False, "siblings": siblings})

            def _tree(self, repo: str) -> None:
                """The file list snapshot_download walks (one page, no folders)."""
                entries = [
                    {
                        "type": "file",
                        "path": name,
                        "size": f.path.stat().st_size,
                        "oid": f.sha256[:40],
                        "lfs": {"oid": f.sha256, "size": f.path.stat().st_size, "pointerSize": 134},
                    }
                    for name, f in hub.repos[repo].items()
                ]
                self._json(200, entries)

            def _file(self, f: HubFile, send_body: bool) -> None:
                size = f.path.stat().st_size
                start, end = 0, size - 1
                rng = re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
                ranged = bool(rng) and send_body and not f.no_range
                if ranged:
                    start = int(rng[1])  # type: ignore[index]
                    end = min(size - 1, int(rng[2])) if rng[2] else size - 1  # type: ignore[index]
                    if start >= size:
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{size}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                self.send_response(206 if ranged else 200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("X-Linked-Etag", f'"{f.sha256}"')
                self.send_header("X-Linked-Size", str(size))
                self.send_header("ETag", f'"{f.sha256}"')
                if not f.no_range:
                    self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(end - start + 1))
                if ranged:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                self.end_headers()
                if not send_body:
                    return
                f.gets += 1
                t0 = time.monotonic()
                sent = 0
                with f.path.open("rb") as fh:
                    fh.seek(start)
                    left = end - start + 1
                    while left > 0:
                        block = fh.read(min(left, 1 << 20))
                        if not block:
                            break
                        if f.corrupt and start + sent + len(block) > size - 16:
                            cut = max(0, size - 16 - (start + sent))
                            block = block[:cut] + bytes(len(block) - cut)
                        if f.cut_after is not None and f.gets == 1 and sent + len(block) > f.cut_after:
                            self.wfile.write(block[: f.cut_after - sent])
                            self.wfile.flush()
                            self.connection.shutdown(2)  # the network drops mid-file
                            self.close_connection = True
                            return
                        try:
                            self.wfile.write(block)
                        except (BrokenPipeError, ConnectionResetError):
                            return  # the client had what it wanted (a header reader stops early)
                        sent += len(block)
                        f.bytes_sent += len(block)
                        left -= len(block)
                        if f.rate:  # pace the stream: sent bytes are due at sent / rate
                            ahead = sent / f.rate - (time.monotonic() - t0)
                            if ahead > 0:
                                time.sleep(ahead)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, f"http://127.0.0.1:{server.server_address[1]}"
