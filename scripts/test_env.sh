#!/usr/bin/env bash
# System parts the real-part tests use, installed only when missing and only as root:
#   Debian's chromium (Playwright drives it), docker.io (a private dockerd), docker-registry
#   (a local registry on loopback, to test image pulls without the internet).
# Starts a private dockerd and registry when they are not already answering, builds the small
# engine image, and prints `export` lines for the tests (scripts/test.sh evals them).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${ZOE_CACHE:-$HOME/.cache/zoe-panel}"
D="${ZOE_TEST_DOCKER_DIR:-/tmp/zoe-test-docker}"
SOCK="$D/docker.sock"
REG_PORT="${ZOE_TEST_REGISTRY_PORT:-5055}"

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v ss >/dev/null 2>&1 || need+=(iproute2)
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo ">> apt-get install ${need[*]}" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo ">> missing ${need[*]} (not root): the tests that need them will be skipped" >&2
  fi
fi

# The conversion support (torch, transformers: a separate venv under the cache) for the convert
# tests, installed the way the panel's "Install conversion support" does it. ZOE_TORCH_INDEX is
# empty here: pip's own configuration finds the CPU torch (this machine has no PyTorch index).
if ! .venv/bin/python -c 'import sys; from pathlib import Path; from zoe_panel.models.convert import support; sys.exit(0 if support(Path(sys.argv[1])).ready else 1)' "$CACHE" 2>/dev/null; then
  echo ">> installing the conversion support (torch CPU, transformers) into $CACHE/convert-venv" >&2
  ZOE_TORCH_INDEX="${ZOE_TORCH_INDEX-}" ZOE_CACHE="$CACHE" .venv/bin/python -m zoe_panel convert --install-support >&2 \
    || echo ">> conversion support did not install: the convert tests will say so" >&2
fi

# vLLM, the second engine kind (its own venv under the cache, ~2 min and 876 MB the first time),
# installed the way the Engine page's "Install vLLM" does it.
if [ ! -x "$CACHE/vllm-venv/bin/python" ] || ! ls -d "$CACHE"/vllm-venv/lib/python*/site-packages/vllm >/dev/null 2>&1 \
   || ! ls -d "$CACHE"/vllm-venv/lib/python*/site-packages/accelerate >/dev/null 2>&1; then
  echo ">> installing vLLM (CPU build) into $CACHE/vllm-venv" >&2
  ZOE_CACHE="$CACHE" .venv/bin/python -m zoe_panel vllm --install >&2 \
    || echo ">> vLLM did not install: the vLLM tests will say so" >&2
fi

if [ "$(id -u)" = 0 ] && command -v dockerd >/dev/null 2>&1; then
  mkdir -p "$D"
  if ! DOCKER_HOST="unix://$SOCK" .venv/bin/python -c 'import docker; docker.from_env(timeout=3).ping()' 2>/dev/null; then
    echo ">> starting a private dockerd ($SOCK)" >&2
    # "nvidia" is registered as an alias of runc, so the Jetson wiring (--runtime nvidia) runs for
    # real on a machine without NVIDIA's container toolkit; a missing runtime is tested by name.
    setsid dockerd --data-root "$D/data" --exec-root "$D/exec" --host "unix://$SOCK" --pidfile "$D/docker.pid" \
      --iptables=false --bridge=none --add-runtime nvidia=runc >"$D/dockerd.log" 2>&1 < /dev/null &
    for _ in $(seq 1 60); do
      DOCKER_HOST="unix://$SOCK" .venv/bin/python -c 'import docker; docker.from_env(timeout=3).ping()' 2>/dev/null && break
      sleep 0.5
    done
  fi
  if command -v docker-registry >/dev/null 2>&1 && ! (exec 3<>"/dev/tcp/127.0.0.1/$REG_PORT") 2>/dev/null; then
    echo ">> starting a local registry on 127.0.0.1:$REG_PORT" >&2
    cat > "$D/registry.yml" <<YML
version: 0.1
storage:
  filesystem:
    rootdirectory: $D/registry
http:
  addr: 127.0.0.1:$REG_PORT
log:
  level: warn
YML
    setsid docker-registry serve "$D/registry.yml" >"$D/registry.log" 2>&1 < /dev/null &
    sleep 1
  fi
  bin=$(.venv/bin/python -m zoe_panel.build llama-server | tail -1)
  model=$(.venv/bin/python -c 'from zoe_panel.build.__main__ import default_cache, demo_model; print(demo_model(default_cache()))')
  # Rebuilt when the checked binary changes (the image is labelled with it); smoke-run in a container.
  if ! DOCKER_HOST="unix://$SOCK" .venv/bin/python - "$bin" <<'PY' 2>/dev/null
import sys, docker
from pathlib import Path
b = Path(sys.argv[1]).resolve(); st = b.stat()
img = docker.from_env().images.get("zoe-panel/llama-server:local")
sys.exit(0 if (img.labels or {}).get("zoe-panel.binary") == f"{b}:{st.st_size}:{st.st_mtime_ns}" else 1)
PY
  then
    echo ">> building the engine image from $bin" >&2
    DOCKER_HOST="unix://$SOCK" .venv/bin/python scripts/build_engine_image.py "$bin" zoe-panel/llama-server:local \
      --smoke-model "$model" >&2
  fi
  echo "export ZOE_TEST_DOCKER_HOST=unix://$SOCK ZOE_TEST_REGISTRY=127.0.0.1:$REG_PORT"
fi
