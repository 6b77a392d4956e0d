#!/usr/bin/env bash
# make llama-server: build (or reuse) llama-server + rpc-server from the llama.cpp vendored in the
# llama-cpp-python sdist, trusted only after a smoke decode of the demo model on this machine; a
# variant that crashes (SIGILL) is replaced by the next, the choice remembered per machine.
# Prints the path of the binary on its last line. See zoe_panel/build/ for the rules.
#   ZOE_BUILD_VARIANT=auto|best|native|native-noamx|portable (portable: the safe switch)
#   ZOE_FORCE_CPU=1, ZOE_CUDA_ARCH=87, ZOE_BUILD_JOBS=N
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
exec "$PY" -m zoe_panel.build llama-server "$@"
