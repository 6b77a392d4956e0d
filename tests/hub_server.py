"""A local server that speaks the part of the Hugging Face Hub API huggingface_hub uses to download:
``GET /api/models/{repo}[/revision/{rev}]?blobs=true`` (file list with sizes and LFS sha256) and
``HEAD/GET /{repo}/resolve/{rev}/{file}`` (X-Repo-Commit, X-Linked-Etag, X-Linked-Size, Range).

Faults for tests: ``cut_after`` closes the connection after N bytes of the first GET of a file
(the client must resume), ``corrupt`` serves bytes whose sha256 is not the advertised one.
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
    gets: int = 0


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

            def _file(self, f: HubFile, send_body: bool) -> None:
                data = f.path.read_bytes()
                if f.corrupt:
                    data = data[:-16] + bytes(16)
                size = len(data)
                start = 0
                rng = re.match(r"bytes=(\d+)-", self.headers.get("Range", ""))
                if rng and send_body:
                    start = int(rng[1])
                self.send_response(206 if start else 200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("X-Linked-Etag", f'"{f.sha256}"')
                self.send_header("X-Linked-Size", str(size))
                self.send_header("ETag", f'"{f.sha256}"')
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(size - start))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
                self.end_headers()
                if not send_body:
                    return
                f.gets += 1
                body = data[start:]
                if f.cut_after is not None and f.gets == 1:
                    self.wfile.write(body[: f.cut_after])
                    self.wfile.flush()
                    self.connection.shutdown(2)  # the network drops mid-file
                    self.close_connection = True
                    return
                t0 = time.monotonic()
                for i in range(0, len(body), 1 << 20):
                    self.wfile.write(body[i : i + (1 << 20)])
                    if f.rate:  # pace the stream: i + 1 MiB bytes are due at (i + 1 MiB) / rate
                        ahead = (i + (1 << 20)) / f.rate - (time.monotonic() - t0)
                        if ahead > 0:
                            time.sleep(ahead)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, f"http://127.0.0.1:{server.server_address[1]}"
