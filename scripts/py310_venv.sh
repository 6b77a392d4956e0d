#!/usr/bin/env bash
# A light Python 3.10 venv (no llama-cpp-python) for the unit tests; exit 1 if no 3.10 exists.
set -euo pipefail
cd "$(dirname "$0")/.."
py=""
for c in python3.10 "$HOME"/.pyenv/versions/3.10*/bin/python3.10 /usr/bin/python3.10; do
  if "$c" -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1; then py=$c; break; fi
done
[ -n "$py" ] || { echo ">> no Python 3.10 here: skipping the 3.10 unit run"; exit 1; }
want=$( (grep -v '^llama-cpp-python' requirements.txt; cat requirements-dev.txt) | sha256sum | cut -d' ' -f1)
if [ "$(cat .venv310/.stamp 2>/dev/null)" != "$want" ]; then
  echo ">> creating .venv310 with $py"
  rm -rf .venv310
  "$py" -m venv .venv310
  .venv310/bin/python -m pip install -qq --upgrade pip
  grep -v '^llama-cpp-python' requirements.txt | .venv310/bin/python -m pip install -qq -r /dev/stdin pytest hypothesis pytest-timeout
  echo "$want" > .venv310/.stamp
fi
