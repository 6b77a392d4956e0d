#!/usr/bin/env bash
# One call on an NVIDIA machine with no internet (the device tool): install the carried wheels,
# build a CUDA llama-server + llama-bench from the carried pruned llama.cpp (the same vendored
# source the panel builds elsewhere), then run bench/gpu_bench.py. Results land in $OUT.
#   carried: .whl/ (gguf, psutil, httpx, filelock, nvidia-ml-py, ...), .device/llama.cpp,
#            .device/smollm2-tokenizer.gguf (SmolLM2's tokenizer, no weights)
# Prepare them with bench/gpu_prepare.sh on a machine with PyPI access.
set -euo pipefail
OUT="${OUT:-/tmp/gpu-out}"; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
t0=$(date +%s)
cmake -S .device/llama.cpp -B /tmp/lb -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90}" -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF >/tmp/cmake.log 2>&1 \
  || { tail -30 /tmp/cmake.log; exit 1; }
cmake --build /tmp/lb --target llama-server llama-bench -j "$(nproc)" >/tmp/build.log 2>&1 || { tail -40 /tmp/build.log; exit 1; }
echo "build took $(( $(date +%s) - t0 )) s"
/tmp/lb/bin/llama-server --version 2>&1 | head -2
python3 bench/gpu_bench.py --llama-server /tmp/lb/bin/llama-server --llama-bench /tmp/lb/bin/llama-bench \
  --tokenizer .device/smollm2-tokenizer.gguf --out "$OUT"
