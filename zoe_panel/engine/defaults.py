"""Engine defaults, in one place: the spec's fields, the Engine page's form, presets and the
estimate CLI all read them from here (they were written in four places)."""

from __future__ import annotations

CTX = 4096
N_GPU_LAYERS = 999  # all; llama.cpp clamps to the layer count
CACHE_TYPE = "f16"
FLASH_ATTN = "auto"
PARALLEL = 4  # what llama-server's automatic slots do
KV_UNIFIED = True  # slots share one cache: memory does not grow with slots
UBATCH = 512
BATCH = 2048
THREADS = 0  # the engine's own default
N_PREDICT = 512  # tokens for a request that sets no max_tokens
# After load: llama-server's prompt cache (--cache-ram; upstream 8192 MiB of host RAM) and its
# context checkpoints (--ctx-checkpoints; upstream 32 per slot). The panel always passes both: the
# cache is sized from memory at start (runtime), this is only the value for hand-made specs.
CACHE_RAM_MIB = 1024
CACHE_RAM_MAX_MIB = 8192  # never more than upstream's default
ROUTER_CACHE_RAM_MIB = 256  # per model of a router (each keeps its own cache)
CTX_CHECKPOINTS = 8  # enough for chat (each turn needs the latest), a quarter of upstream's memory
HOST = "127.0.0.1"
PORT = 8088  # 8080 is often taken on Jetsons
FLAVOR = "llama-server"
IMAGE_BINARY = "llama-server"  # the engine program on an image's PATH (jetson-containers images)
