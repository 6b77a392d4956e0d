#!/usr/bin/env bash
# System packages the real-part tests use: Debian's Chromium (Playwright drives it).
# Installs only what is missing, and only as root; otherwise the tests that need it say so.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo ">> apt-get install ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo ">> missing ${need[*]} (not root): the tests that need them will be skipped" >&2
  fi
fi
