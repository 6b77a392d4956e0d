"""``PUT /zoe/upload/<file name>``: a model upload streamed to disk, never held in memory.

Streamlit's file_uploader keeps the whole file in RAM (a 4 GiB model would need 4 GiB twice), so
model files come through this small route instead. It needs a bearer token that the Models page
hands to a signed-in session (sessions.AuthorizedSessions), a Content-Length within the upload
cap, and that much free disk (plus the margin) before it reads the first byte. The body goes to
the models folder's staging area chunk by chunk, is checked as GGUF (in a child process, like any
header), and only then renamed into the library. Anything else leaves no file behind.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from zoe_panel.errors import ZoePanelError
from zoe_panel.web.sessions import AUTHORIZED, AuthorizedSessions

ROUTE = "/zoe/upload/{name}"


@dataclass
class UploadProgress:
    """What the Models page shows while a file arrives (one upload at a time)."""

    name: str = ""
    total: int = 0
    done: int = 0
    state: str = "idle"  # idle | receiving | checking | added | failed
    message: str = ""
    at: float = field(default_factory=time.time)


class Uploads:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.current = UploadProgress()

    def begin(self, name: str, total: int) -> bool:
        with self.lock:
            if self.current.state in ("receiving", "checking"):
                return False
            self.current = UploadProgress(name, total, 0, "receiving")
            return True

    def update(self, **changes: Any) -> None:
        with self.lock:
            for k, v in changes.items():
                setattr(self.current, k, v)
            self.current.at = time.time()


UPLOADS = Uploads()


def upload_cap_bytes(upload_max_mb: int) -> int:
    """The largest model upload: the setting, else 64 GiB (bigger than any model a board holds)."""
    return (upload_max_mb or 64 * 1024) * 2**20


def make_endpoint(sessions: AuthorizedSessions = AUTHORIZED, uploads: Uploads = UPLOADS) -> Any:
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    async def endpoint(request: Request) -> JSONResponse:
        from zoe_panel.runtime import get_runtime

        auth = request.headers.get("authorization", "")
        session = sessions.check_token(auth.removeprefix("Bearer ").strip()) if auth.startswith("Bearer ") else None
        if session is None:
            return JSONResponse({"error": "sign in first: no valid upload token for a signed-in session"}, 403)
        rt = get_runtime()
        client = request.client.host if request.client else "?"
        name = unquote(request.path_params["name"])
        length = request.headers.get("content-length", "")
        if not length.isdigit():
            return JSONResponse({"error": "the upload needs a Content-Length (a file, not a stream)"}, 411)
        try:
            staged, final = _prepare(rt, name, int(length))
        except ZoePanelError as e:
            rt.history.audit("upload", "refused", client=client, target=name[:120], detail=str(e)[:300])
            return JSONResponse({"error": str(e)}, 400 if "space" not in str(e) else 507)
        if not uploads.begin(final, int(length)):
            return JSONResponse({"error": "another upload is in progress; wait for it to finish"}, 409)
        try:
            path = await _receive(request, rt, staged, final, int(length), uploads)
        except ZoePanelError as e:
            staged.unlink(missing_ok=True)
            uploads.update(state="failed", message=str(e))
            rt.history.audit("upload", "refused", client=client, target=final, detail=str(e)[:300])
            return JSONResponse({"error": str(e)}, 400)
        except BaseException:
            staged.unlink(missing_ok=True)  # client gone mid-body: nothing half-written stays
            uploads.update(state="failed", message="the connection was lost; nothing was added")
            raise
        uploads.update(state="added", message=f"added {path.name}")
        rt.history.audit("upload", "ok", client=client, target=path.name, detail=f"{int(length)} bytes")
        return JSONResponse({"ok": True, "name": path.name, "size_bytes": int(length)})

    return endpoint


def _prepare(rt: Any, name: str, length: int) -> tuple[Path, str]:
    from zoe_panel.errors import ModelStoreError
    from zoe_panel.models.library import check_space, safe_name, staging_dir

    final = safe_name(name)
    cap = upload_cap_bytes(rt.settings.upload_max_mb)
    if length > cap:
        raise ModelStoreError(
            f"{final} is {length / 2**30:.2f} GiB; uploads are capped at {cap / 2**30:.2f} GiB (setting upload_max_mb)"
        )
    if (rt.store.ensure_root() / final).exists():
        raise ModelStoreError(f"{final} is already in the library")
    check_space(rt.store, length, rt.settings.disk_margin_bytes)
    return staging_dir(rt.store) / f"{final}.{os.getpid()}.{threading.get_ident()}.part", final


async def _receive(request: Any, rt: Any, staged: Path, final: str, length: int, uploads: Uploads) -> Path:
    from zoe_panel.errors import ModelStoreError
    from zoe_panel.models.library import commit_staged, validate_gguf

    received = 0
    last = 0.0
    with staged.open("wb") as out:
        async for chunk in request.stream():
            received += len(chunk)
            if received > length:
                raise ModelStoreError(f"{final}: more bytes arrived than its Content-Length said")
            await asyncio.to_thread(out.write, chunk)
            if time.monotonic() - last > 0.25:
                last = time.monotonic()
                uploads.update(done=received)
    if received != length:
        raise ModelStoreError(f"{final}: the upload stopped at {received:,} of {length:,} bytes; nothing was added")
    uploads.update(done=received, state="checking")
    await asyncio.to_thread(validate_gguf, staged, final)
    return await asyncio.to_thread(commit_staged, rt.store, staged, final)


def routes() -> list[Any]:
    from starlette.routing import Route

    return [Route(ROUTE, make_endpoint(), methods=["PUT"])]
