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

import streamlit as st
from starlette.middleware import Middleware

from zoe_panel.errors import ConfigError
from zoe_panel.settings import load_settings
from zoe_panel.web.middleware import ClientAddress, UploadGuard
from zoe_panel.web.upload import routes

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
app = st.App(
    "app.py",
    routes=routes(),
    middleware=[
        Middleware(ClientAddress, trusted_proxies=_trusted),
        Middleware(UploadGuard, max_bytes=SMALL_UPLOAD_MIB * 2**20),
    ],
)
