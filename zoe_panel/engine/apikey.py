"""The API key every engine the panel starts requires.

llama-server answers any web page's cross-origin request (it echoes the Origin in
Access-Control-Allow-Origin) and this build has no switch to stop that. Without a key, any page a
browser on this machine (or, on 0.0.0.0, the LAN) opens could use the engine. So the panel gives
every engine a key: the ``engine_api_key`` setting when set, else one generated once and kept in
the state folder, owner-only. The panel's own chat, probes and checks send it; clients copy it from
the Endpoint page. ``engine_api_key = "off"`` runs engines without a key, deliberately.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from zoe_panel.settings import Settings

OFF = "off"
FILE = "engine-api-key"


def new_api_key() -> str:
    return "zoe-" + secrets.token_urlsafe(24)


def engine_api_key(settings: Settings) -> str:
    """The key to start engines with ('' when the setting says off)."""
    if settings.engine_api_key.strip().lower() == OFF:
        return ""
    if settings.engine_api_key:
        return settings.engine_api_key
    return _generated(settings.state_dir / FILE)


def _generated(path: Path) -> str:
    try:
        key = path.read_text().strip()
        if key:
            return key
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = new_api_key()
    try:  # O_EXCL: two processes starting at once agree on the first key written
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip() or key
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key
