#!/usr/bin/env bash
# make bench: every benchmark, full iterations, results in BENCHMARKS.md. Extra args go to bench/run.py.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/test_env.sh)"
exec .venv/bin/python bench/run.py "$@"
