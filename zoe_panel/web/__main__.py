"""``python -m zoe_panel.web [streamlit options]``: serve the panel (what `make run` does).

It runs ``streamlit run serve.py`` with uvicorn's own X-Forwarded-For handling turned off:
uvicorn trusts the header from any loopback peer by default, which let one client pick its own
address (and a fresh sign-in lockout bucket) by sending the header. The panel decides itself,
from the trusted_proxies setting (web/middleware.py: ClientAddress).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

SERVE = Path(__file__).resolve().parents[2] / "serve.py"


def main(argv: list[str] | None = None) -> None:
    env = dict(os.environ)
    env["FORWARDED_ALLOW_IPS"] = ""  # uvicorn trusts no proxy header; ClientAddress does the work
    args = [sys.executable, "-m", "streamlit", "run", str(SERVE), *(sys.argv[1:] if argv is None else argv)]
    os.chdir(SERVE.parent)  # .streamlit/config.toml is read from the working directory
    os.execve(sys.executable, args, env)


if __name__ == "__main__":
    main()
