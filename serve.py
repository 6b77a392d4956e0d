"""The panel's server: Streamlit serving app.py, with the panel's HTTP guards in front.

Start it with ``make run`` or ``python -m zoe_panel.web`` (that launcher also turns off
uvicorn's trust of X-Forwarded-For from loopback peers). What this adds to Streamlit:
  * ClientAddress: the client's address, from X-Forwarded-For only behind a proxy that the
    trusted_proxies setting names;
  * UploadGuard: Streamlit's in-memory upload endpoint only for signed-in sessions and small files;
  * PUT /zoe/upload/<name>: model files streamed to disk, for signed-in sessions.
"""

import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import streamlit as st
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from zoe_panel.errors import ConfigError
from zoe_panel.runtime import WARM, warm_up
from zoe_panel.settings import load_settings
from zoe_panel.web.middleware import ClientAddress, UploadGuard
from zoe_panel.web.upload import routes

# Streamlit polls its config.toml files every 0.2 s whatever server.fileWatcherType says (a third of
# an idle panel's own CPU); every 2 s is plenty for a file edited by hand. A private constant, read on
# each poll: if a Streamlit release renames it, this line only stops mattering.
try:
    import streamlit.watcher.polling_path_watcher as _polling

    _polling._POLLING_PERIOD_SECS = 2.0  # type: ignore[misc]
except ImportError:
    pass

SMALL_UPLOAD_MIB = 32  # Streamlit's own uploads (a client script, a prompt file); models use /zoe/upload

if os.environ.get("FORWARDED_ALLOW_IPS") is None:
    logging.getLogger("zoe_panel").warning(
        "started without the launcher: uvicorn trusts X-Forwarded-For from loopback peers; "
        "use `make run` or `python -m zoe_panel.web`"
    )

try:
    _trusted = load_settings().trusted_proxies
except ConfigError:
    _trusted = ""  # a damaged settings file: app.py shows why; trust no proxy meanwhile


async def ready(_request: Request) -> JSONResponse:
    """200 once the panel has warmed up (runtime built, page modules imported, library read), 503
    before: for a service manager's readiness check, and for tests that measure the panel at rest."""
    return JSONResponse({"warm": WARM.is_set()}, status_code=200 if WARM.is_set() else 503)


@asynccontextmanager
async def lifespan(_app: st.App) -> AsyncIterator[None]:
    # in a thread: the server answers at once, and a first visitor finds the work done or under way
    threading.Thread(target=warm_up, name="zoe-warm-up", daemon=True).start()
    yield


app = st.App(
    "app.py",
    lifespan=lifespan,
    routes=[*routes(), Route("/zoe/ready", ready)],
    middleware=[
        Middleware(ClientAddress, trusted_proxies=_trusted),
        Middleware(UploadGuard, max_bytes=SMALL_UPLOAD_MIB * 2**20),
    ],
)
