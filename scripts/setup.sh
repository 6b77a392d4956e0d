#!/usr/bin/env bash
# Set up everything the panel needs, idempotently; a second run does (almost) nothing.
#   1. .venv with requirements.txt (re-installed only when the file changes)
#   2. a native llama-server (on PATH, ZOE_LLAMA_SERVER, or built once into ~/.cache/zoe-panel)
#   3. the demo model (SmolLM2-135M) when the models folder holds no GGUF
# ZOE_FORCE_CPU=1 builds llama-server without CUDA even where nvcc or a Jetson is found.
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
  echo ">> installing requirements (the first time compiles llama-cpp-python: ~4 min on 2 cores)"
  .venv/bin/python -m pip install -qq --upgrade pip
  CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
    .venv/bin/python -m pip install -qq -r requirements.txt
  echo "$want" > "$stamp"
fi

if [ -z "${ZOE_LLAMA_SERVER:-}" ] && ! command -v llama-server >/dev/null 2>&1; then
  PATH="$PWD/.venv/bin:$PATH" scripts/build_llama_server.sh >/dev/null
fi

.venv/bin/python -m zoe_panel demo-model
