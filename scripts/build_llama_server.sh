#!/usr/bin/env bash
# Builds a native llama-server once from the llama.cpp source vendored in the llama-cpp-python
# sdist (the same llama.cpp the Python flavour links), and caches it under ZOE_CACHE.
# CUDA is used where nvcc is found or on a Jetson; ZOE_FORCE_CPU=1 forces a CPU build.
# Prints the path of the binary on its last line.
set -euo pipefail

LCP_VERSION="${ZOE_LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
CACHE="${ZOE_CACHE:-$HOME/.cache/zoe-panel}"
JOBS="${ZOE_BUILD_JOBS:-$(nproc)}"

flavour=cpu
cuda_args=()
if [ "${ZOE_FORCE_CPU:-0}" != 1 ]; then
  if [ -e /etc/nv_tegra_release ]; then
    flavour=cuda-tegra
    # Orin = sm_87. VMM off: on Jetson the virtual-memory pool fails where plain cudaMalloc works
    # (REFERENCE.md §1.3); unified memory makes the pool pointless anyway.
    cuda_args=(-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="${ZOE_CUDA_ARCH:-87}" -DGGML_CUDA_NO_VMM=ON)
  elif command -v nvcc >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
    flavour=cuda
    cuda_args=(-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="${ZOE_CUDA_ARCH:-native}")
  fi
fi

out="$CACHE/bin/llama-server-$LCP_VERSION-$flavour"
if [ -x "$out" ] && "$out" --version >/dev/null 2>&1; then
  echo "$out"; exit 0
fi

mkdir -p "$CACHE/dl" "$CACHE/src" "$CACHE/bin"
sdist="$CACHE/dl/llama_cpp_python-$LCP_VERSION.tar.gz"
if [ ! -f "$sdist" ]; then
  echo ">> downloading llama-cpp-python $LCP_VERSION sdist (for its vendored llama.cpp)" >&2
  python3 -m pip download -qq --no-deps --no-binary :all: -d "$CACHE/dl" "llama-cpp-python==$LCP_VERSION" >&2
fi
src="$CACHE/src/llama_cpp_python-$LCP_VERSION/vendor/llama.cpp"
if [ ! -f "$src/CMakeLists.txt" ]; then
  tar -xzf "$sdist" -C "$CACHE/src"
fi

build="$CACHE/build/llama.cpp-$LCP_VERSION-$flavour"
gen=()
command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
echo ">> building llama-server ($flavour) in $build; takes ~5 min on 2 cores, once" >&2
cmake -S "$src" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_UI=OFF \
  -DLLAMA_USE_PREBUILT_UI=OFF "${cuda_args[@]}" >&2
cmake --build "$build" --target llama-server -j "$JOBS" >&2
cp "$build/bin/llama-server" "$out.tmp"
mv "$out.tmp" "$out"
echo "$out"
