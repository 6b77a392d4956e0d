"""Hugging Face folders as vLLM models, without vLLM: what config.json and the safetensors headers
say (shape, parameters, weights, quantization), the KV vLLM will fit from them (the same as from
the GGUF of the same model), the command line for an AWQ folder, the library's listing and its
refusals (truncated shards, missing shards, pickled weights, names that lead out)."""

from __future__ import annotations

import json
import math
import struct
from dataclasses import replace
from pathlib import Path

import pytest
from hf_folder import LLAMA_CONFIG, make_folder, write_safetensors

from zoe_panel.engine.base import EngineSpec
from zoe_panel.engine.flavors.vllm import hf_dir, vllm_argv
from zoe_panel.errors import ConfigError, EstimateError, InvalidModelError, ModelStoreError
from zoe_panel.models.fit import GIB, MemoryBudget
from zoe_panel.models.fit_vllm import vllm_estimate, vllm_kv_bytes_per_token
from zoe_panel.models.hf_model import hf_shape, read_hf_model
from zoe_panel.models.library import delete
from zoe_panel.models.shape import model_shape
from zoe_panel.models.store import ModelStore

DATA = Path(__file__).resolve().parents[1] / "data" / "hf"
CPU = MemoryBudget("cpu", 16 * GIB)


def vspec(model: Path, **kw: object) -> EngineSpec:
    return EngineSpec(model=str(model), flavor="vllm", ctx=1024, parallel=2, kv_space_mib=256, **kw)  # type: ignore[arg-type]


def test_a_folder_is_read_from_its_config_and_headers(tmp_path: Path) -> None:
    folder = tmp_path / "Tiny.hf"
    tensors = make_folder(folder, shards=3)
    m = read_hf_model(folder)
    assert (m.name, m.architecture, m.dtype, m.quant_method) == ("Tiny", "LlamaForCausalLM", "bfloat16", "")
    assert m.parameter_count == sum(math.prod(s) for _, s in tensors.values())
    assert m.weights_bytes == 2 * m.parameter_count and len(m.weights) == 3
    shape = m.shape
    assert (shape.n_layer, shape.n_embd, shape.n_ctx_train, shape.n_vocab) == (2, 64, 2048, 256)
    assert [(la.n_head_kv, la.head_k) for la in shape.kv_layers] == [(2, 16), (2, 16)]
    # K and V, 2 layers, 2 KV heads of 16, bf16
    assert vllm_kv_bytes_per_token(shape) == 2 * 2 * 2 * 16 * 2


def test_the_same_model_sizes_alike_from_its_gguf_and_its_folder_config(smollm2: Path) -> None:
    """SmolLM2's config.json (as the panel's folder holds it) against its GGUF: the same KV per token
    and trained context, so a downloaded repo is predicted as its GGUF is."""
    from zoe_panel.models.gguf_meta import read_gguf

    info = read_gguf(smollm2)
    gguf_shape = model_shape(info)
    cfg_shape = hf_shape(json.loads((DATA / "smollm2_config.json").read_text()))
    assert vllm_kv_bytes_per_token(cfg_shape) == vllm_kv_bytes_per_token(gguf_shape) == 30 * 2 * 3 * 64 * 2
    assert cfg_shape.n_ctx_train == gguf_shape.n_ctx_train and cfg_shape.n_layer == gguf_shape.n_layer
    assert (cfg_shape.n_embd, cfg_shape.n_ff, cfg_shape.n_vocab) == (gguf_shape.n_embd, gguf_shape.n_ff, 49152)


def test_nested_sliding_window_and_mla_configs() -> None:
    gemma = {
        "architectures": ["Gemma3ForConditionalGeneration"],
        "model_type": "gemma3",
        "text_config": {
            "hidden_size": 640, "num_hidden_layers": 6, "num_attention_heads": 4, "num_key_value_heads": 1,
            "head_dim": 256, "intermediate_size": 2048, "vocab_size": 262144, "sliding_window": 512,
            "max_position_embeddings": 32768,
            "layer_types": ["sliding_attention"] * 5 + ["full_attention"],
        },
    }  # fmt: skip
    s = hf_shape(gemma)
    assert s.n_layer == 6 and s.n_swa == 512 and [la.is_swa for la in s.layers] == [True] * 5 + [False]
    assert s.kv_layers[0].head_k == 256 and s.n_ctx_train == 32768
    mla = {"hidden_size": 2048, "num_hidden_layers": 4, "num_attention_heads": 16, "kv_lora_rank": 512,
           "qk_rope_head_dim": 64, "vocab_size": 1000}  # fmt: skip
    m = hf_shape(mla)
    assert m.is_mla and vllm_kv_bytes_per_token(m) == 4 * (512 + 64) * 2  # one latent per token, no V
    with pytest.raises(InvalidModelError, match="no num_hidden_layers"):
        hf_shape({"hidden_size": 8, "num_attention_heads": 2})


def test_an_awq_folder_is_served_packed_in_fp16(tmp_path: Path) -> None:
    """The seed's models: AWQ. vLLM is told the method and fp16 (its AWQ kernels refuse bf16 on the
    Jetson images' vLLM), and the weights are what the packed files hold, not parameters × 2."""
    folder = tmp_path / "Qwen-AWQ.hf"
    cfg = {**LLAMA_CONFIG, "torch_dtype": "float16",
           "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemm"}}  # fmt: skip
    make_folder(folder, cfg)
    # AWQ packs 8 four-bit values in each int32: replace the weights with packed ones
    write_safetensors(
        folder / "model.safetensors",
        {"model.embed_tokens.weight": ("F16", [256, 64]), "model.layers.0.self_attn.q_proj.qweight": ("I32", [64, 8]),
         "model.layers.0.self_attn.q_proj.scales": ("F16", [1, 64])},
    )  # fmt: skip
    m = read_hf_model(folder)
    assert (m.quant_method, m.quant_bits) == ("awq", 4)
    argv = vllm_argv("python3", vspec(folder))
    assert argv[argv.index("--model") + 1] == str(folder) == str(hf_dir(folder))
    assert argv[argv.index("--quantization") + 1] == "awq" and argv[argv.index("--dtype") + 1] == "float16"
    assert "bfloat16" not in argv
    # an operator's flag still wins: it comes last
    mine = vllm_argv("python3", vspec(folder, extra_args=("--quantization", "awq_marlin")))
    assert mine[len(mine) - 1 - mine[::-1].index("--quantization") + 1] == "awq_marlin"
    est = vllm_estimate(m, vspec(folder), CPU)
    assert est.weights_bytes == m.weights_bytes == 256 * 64 * 2 + 64 * 8 * 4 + 64 * 2
    assert any("awq 4-bit" in n for n in est.notes)


def test_the_serving_dtype_sizes_weights_and_kv(tmp_path: Path) -> None:
    folder = tmp_path / "Tiny.hf"
    make_folder(folder)
    m = read_hf_model(folder)
    bf16 = vllm_estimate(m, vspec(folder), CPU)
    fp32 = vllm_estimate(m, vspec(folder, extra_args=("--enforce-eager", "--dtype", "float32")), CPU)
    fp8 = vllm_estimate(m, vspec(folder, extra_args=("--kv-cache-dtype", "fp8")), CPU)
    assert fp32.weights_bytes == 2 * bf16.weights_bytes == 4 * m.parameter_count
    # whole blocks of 128 tokens in the same 256 MiB: half as many tokens in fp32, twice in fp8
    assert fp32.n_ctx == bf16.n_ctx // 2 and fp8.n_ctx == bf16.n_ctx * 2
    small = vllm_estimate(m, replace(vspec(folder), ctx=2_000_000), CPU)
    assert any("less than one request" in n for n in small.notes)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncate", "truncated or corrupt"),
        ("header", "not valid JSON"),
        ("huge", "not a safetensors file, or truncated"),
        ("shard", "incomplete: 1 of 2 weight shards are missing"),
        ("outside", "names files outside the folder"),
        ("pickle", "only pickled PyTorch weights"),
        ("config", "config.json is not valid JSON"),
        ("noconfig", "no config.json"),
        ("sizes", "declares 16,384 BF16 values but"),
    ],
)
def test_damaged_folders_are_refused_with_the_reason(tmp_path: Path, damage: str, message: str) -> None:
    folder = tmp_path / "Bad.hf"
    make_folder(folder, shards=2 if damage in ("shard", "outside") else 1)
    weights = folder / "model.safetensors"
    if damage == "truncate":
        with weights.open("r+b") as f:
            f.truncate(weights.stat().st_size - 10)
    elif damage == "header":
        raw = weights.read_bytes()
        (n,) = struct.unpack("<Q", raw[:8])
        weights.write_bytes(raw[:8] + b"{" * n + raw[8 + n :])
    elif damage == "huge":
        weights.write_bytes(struct.pack("<Q", 2**40) + b"{}")
    elif damage == "shard":
        sorted(folder.glob("model-*.safetensors"))[0].unlink()
    elif damage == "outside":
        index = json.loads((folder / "model.safetensors.index.json").read_text())
        index["weight_map"]["x"] = "../../etc/passwd"
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    elif damage == "pickle":
        weights.unlink()
        (folder / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    elif damage == "config":
        (folder / "config.json").write_text("{not json")
    elif damage == "noconfig":
        (folder / "config.json").unlink()
    elif damage == "sizes":
        write_safetensors(weights, {"w": ("BF16", [128, 128])})
        raw = bytearray(weights.read_bytes())
        (n,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8 : 8 + n])
        header["w"]["data_offsets"] = [0, 16]  # fewer bytes than the shape needs
        new = json.dumps(header).encode()
        weights.write_bytes(struct.pack("<Q", len(new)) + new + b"\0" * 16)
    with pytest.raises(InvalidModelError, match=message):
        read_hf_model(folder)


def test_the_library_lists_serves_and_removes_folders(tmp_path: Path) -> None:
    root = tmp_path / "models"
    make_folder(root / "Tiny.hf")
    make_folder(root / ".downloads" / "x--hf" / "Half.hf")  # staging: not part of the library
    (root / "smol.gguf").write_bytes(b"GGUF")  # only its name matters here
    make_folder(root / "smol.hf")  # made from the GGUF beside it
    (root / "Broken.hf").mkdir()
    store = ModelStore(root, tmp_path / "cache.json")
    got = {e.name: e for e in store.hf_entries()}
    assert set(got) == {"Tiny.hf", "smol.hf", "Broken.hf"}
    assert got["Tiny.hf"].ok and got["Tiny.hf"].made_from == "" and got["smol.hf"].made_from == "smol.gguf"
    assert not got["Broken.hf"].ok and "no config.json" in got["Broken.hf"].error
    assert store.resolve("Tiny.hf") == (root / "Tiny.hf").resolve()
    with pytest.raises(ModelStoreError, match="'..' is not allowed"):
        store.resolve("../models/Tiny.hf")
    with pytest.raises(InvalidModelError, match="Hugging Face folder"):
        store.info(root / "Tiny.hf")  # GGUF-only work (quantize, draft) says why
    # the folder a running engine serves stays; another goes, whole
    with pytest.raises(ModelStoreError, match="served by the running engine"):
        delete(store, "Tiny.hf", in_use=str(root / "Tiny.hf"))
    with pytest.raises(ModelStoreError, match="served by the running engine"):
        delete(store, "smol.hf", in_use=str(root / "smol.gguf"))  # vLLM serving the GGUF's folder
    assert delete(store, "Tiny.hf") == [(root / "Tiny.hf").resolve()] and not (root / "Tiny.hf").exists()


def test_a_folder_gets_vllm_and_nothing_else(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from zoe_panel.runtime import Runtime
    from zoe_panel.settings import load_settings

    home = tmp_path / "home"
    make_folder(home / "models" / "Tiny.hf")
    rt = Runtime(load_settings({"ZOE_HOME": str(home)}), sampler=False)
    spec = rt.default_spec("Tiny.hf")
    assert spec.flavor == "vllm" and spec.model == str((home / "models" / "Tiny.hf").resolve())
    assert spec.model_name == "Tiny.hf" and spec.alias == "Tiny"
    est = rt.memory.estimate(replace(spec, kv_space_mib=256), budget=CPU)
    assert est.n_ctx > 0 and est.weights_bytes == read_hf_model(home / "models" / "Tiny.hf").weights_bytes
    assert rt.preset_for("Tiny.hf").ctx == 2048  # the trained context (at most 4096 to start with)
    # vLLM's limit is its --max-model-len check: the trained context, at most what the KV space holds
    assert rt.memory.max_contexts(replace(spec, kv_space_mib=256), budget=CPU) == {"vLLM": 2048}
    with pytest.raises(ConfigError, match="only vLLM serves it"):
        rt.default_spec("Tiny.hf", flavor="llama-server")
    with pytest.raises(EstimateError, match="only vLLM serves it"):
        rt.memory.estimate(replace(spec, flavor="llama-server"), budget=CPU)
    with pytest.raises(ConfigError, match="already a Hugging Face folder"):
        rt.start_vllm_prepare("Tiny.hf")


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "bad\nname", "x" * 300, ""])
def test_a_download_folder_name_stays_one_plain_name(name: str) -> None:
    from zoe_panel.models.hf_download import folder_name

    if name == "":  # no name given: the repository's
        assert folder_name("Qwen/Qwen2.5-1.5B-Instruct-AWQ", name or None) == "Qwen2.5-1.5B-Instruct-AWQ.hf"
        return
    with pytest.raises(ModelStoreError, match="not a valid folder name"):
        folder_name("org/repo", name)
