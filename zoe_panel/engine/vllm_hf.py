"""Run by the vLLM venv's Python (not the panel's): a library GGUF to the Hugging Face folder vLLM
serves. transformers dequantizes the GGUF into a model, but refuses ``save_pretrained`` on a model
loaded from GGUF, so the weights are copied into a plain model built from the same config and that
is saved (bf16 safetensors), with the tokenizer. Written to ``OUT.part`` and renamed at the end: a
failure leaves no half folder. Usage: python vllm_hf.py MODEL.gguf OUT_DIR"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path


def main(src: Path, out: Path) -> int:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.time()
    staging = out.with_name(out.name + ".part")
    shutil.rmtree(staging, ignore_errors=True)
    print(json.dumps({"step": "reading the GGUF", "progress": 0.05}), flush=True)
    tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    loaded = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.bfloat16)
    print(json.dumps({"step": "copying the weights into a plain model", "progress": 0.6}), flush=True)
    config = loaded.config
    # the GGUF's quantization note would make vLLM look for GGUF weights: these are plain bf16
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attr):
            delattr(config, attr)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [m for m in missing if not m.endswith("lm_head.weight")]:
        print(json.dumps({"error": f"weights do not match the config: missing {missing[:5]}, extra {unexpected[:5]}"}))
        return 2
    if getattr(config, "tie_word_embeddings", False):
        plain.tie_weights()
    print(json.dumps({"step": "saving safetensors", "progress": 0.8}), flush=True)
    plain.save_pretrained(staging, safe_serialization=True)
    tok.save_pretrained(staging)
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(json.dumps({"done": str(out), "bytes": size, "seconds": round(time.time() - t0, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
