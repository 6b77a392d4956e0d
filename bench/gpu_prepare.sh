#!/usr/bin/env bash
# Prepare what bench/gpu_run.sh carries to a GPU machine without internet: wheels for its
# Python 3.12 (everything the panel code it runs imports, docker included: the controller asks
# every backend), a pruned llama.cpp source (CPU, RPC and CUDA backends only), and SmolLM2's
# tokenizer. DEST (default: the repository root) receives .whl/ and .device/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
DEST="${DEST:-$ROOT}"
SRC="${ZOE_CACHE:-$HOME/.cache/zoe-panel}/src/llama_cpp_python-0.3.36/vendor/llama.cpp"
[ -f "$SRC/CMakeLists.txt" ] || "$ROOT/.venv/bin/python" -c 'from zoe_panel.build.server import ensure_source; from zoe_panel.build.__main__ import default_cache; ensure_source(default_cache())'
rm -rf "$DEST/.whl" "$DEST/.device" && mkdir -p "$DEST/.whl" "$DEST/.device"
for p in gguf==0.19.0 psutil httpx httpcore h11 anyio certifi idna filelock nvidia-ml-py pyyaml tqdm sniffio docker \
         typing_extensions requests urllib3 charset_normalizer; do
  python3 -m pip download -qq --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$DEST/.whl" "$p"
done
cp -a "$SRC" "$DEST/.device/llama.cpp"
(cd "$DEST/.device/llama.cpp" && rm -rf docs examples tests models media gguf-py conversion benches pocs skills ci .devops \
   tools/ui/src tools/ui/tests tools/ui/static tools/ui/package-lock.json &&
 for b in cann et hexagon hip metal musa opencl openvino sycl virtgpu vulkan webgpu zdnn zendnn; do rm -rf ggml/src/ggml-$b; done)
"$ROOT/.venv/bin/python" - "$DEST/.device/smollm2-tokenizer.gguf" <<'PY'
import sys
from gguf import GGUFWriter
from zoe_panel.models import demo
from zoe_panel.models.synth import _add_tokenizer, read_tokenizer
from zoe_panel.settings import load_settings
src = demo.cached_model(demo.SMOLLM2, load_settings().cache_dir)
w = GGUFWriter(sys.argv[1], "llama")
_add_tokenizer(w, read_tokenizer(src))
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
PY
du -sh "$DEST/.whl" "$DEST/.device"
