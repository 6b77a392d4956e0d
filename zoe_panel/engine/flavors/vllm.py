"""vLLM's OpenAI-compatible server, from its own venv (installed on demand: vllm_support), serving a
Hugging Face folder: one downloaded into the library (``<name>.hf``, the spec's model itself), or the
one the panel made from a library GGUF (``<model>.hf`` beside it).

For a GGUF the spec's model stays the GGUF: its metadata names the model everywhere (History,
estimates), and the folder is derived from it. On the CPU vLLM reserves ``VLLM_CPU_KVCACHE_SPACE`` GiB for KV up
front; that space is the spec's ``kv_space_mib``."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from zoe_panel.engine.argv import check_extra_args
from zoe_panel.engine.flavors import Flavor

if TYPE_CHECKING:
    from zoe_panel.engine.argv import Capabilities
    from zoe_panel.engine.base import EngineSpec
    from zoe_panel.settings import Settings


HF_SUFFIX = ".hf"  # a Hugging Face folder in the library: NAME.hf
QUANTIZED_DTYPE = "float16"  # AWQ and GPTQ kernels want fp16 activations (bf16 is refused by older vLLM)


def hf_dir(model: str | Path) -> Path:
    """The folder vLLM serves: the model itself when it is a Hugging Face folder (downloaded), else
    the one made from a library GGUF, kept beside it."""
    p = Path(model)
    if p.name.endswith(HF_SUFFIX):
        return p
    return p.with_name(p.stem + HF_SUFFIX)


def quantization_args(spec: EngineSpec) -> list[str]:
    """An AWQ or GPTQ folder (the seed's models): its method passed through, and fp16 activations
    (their kernels refuse bf16 on older vLLM, which the Jetson images carry). Empty otherwise."""
    folder = hf_dir(spec.model)
    try:
        config = json.loads((folder / "config.json").read_text())
        inner = config.get("text_config")  # multimodal configs nest the language model's
        qcfg = config.get("quantization_config") or (
            inner.get("quantization_config") if isinstance(inner, dict) else {}
        )
        method = str(qcfg.get("quant_method", "")).lower() if isinstance(qcfg, dict) else ""
    except (OSError, ValueError, AttributeError):
        return []
    if not method:
        return []
    return ["--quantization", method, "--dtype", QUANTIZED_DTYPE]


def kv_space_gib(spec: EngineSpec) -> int:
    return max(1, round(spec.kv_space_mib / 1024))


# Extra flags an operator may pass to vLLM (flag -> number of values): memory, precision and
# scheduling. Model, context, host, port, sequences and the key are the panel's; flags that load
# code or files (--chat-template, --tokenizer, --trust-remote-code, ...) are refused.
VLLM_EXTRA_FLAGS: dict[str, int] = {
    "--enforce-eager": 0,
    "--dtype": 1,
    "--quantization": 1,
    "--kv-cache-dtype": 1,
    "--gpu-memory-utilization": 1,
    "--max-num-batched-tokens": 1,
    "--block-size": 1,
    "--swap-space": 1,
    "--cpu-offload-gb": 1,
    "--seed": 1,
    "--enable-prefix-caching": 0,
    "--no-enable-prefix-caching": 0,
    "--enable-chunked-prefill": 0,
    "--no-enable-chunked-prefill": 0,
    "--tensor-parallel-size": 1,
}


@dataclass(frozen=True)
class Vllm(Flavor):
    def check_extra(self, args: list[str] | tuple[str, ...]) -> tuple[str, ...]:
        return check_extra_args(args, VLLM_EXTRA_FLAGS)

    def available(self, settings: Settings) -> tuple[bool, str]:
        from zoe_panel.engine.vllm_support import venv_dir, venv_python

        py = venv_python(settings.cache_dir)
        if not py.is_file() or not any(venv_dir(settings.cache_dir).glob("lib/python*/site-packages/vllm")):
            return False, "vLLM is not installed: python -m zoe_panel vllm --install (or the Engine page)"
        return True, str(py)

    def check_model(self, spec: EngineSpec) -> None:
        from zoe_panel.errors import ConfigError

        folder = hf_dir(spec.model)
        if folder == Path(spec.model):  # a downloaded folder (the library has read its headers)
            if not (folder / "config.json").is_file():
                raise ConfigError(f"{folder.name} has no config.json: not a Hugging Face model folder")
            return
        super().check_model(spec)
        if not (folder / "config.json").is_file():
            raise ConfigError(
                f"vLLM serves Hugging Face folders, and {folder.name} is not there yet: prepare it from the "
                f"GGUF (python -m zoe_panel vllm --prepare {Path(spec.model).name}, or Prepare on the Engine page)"
            )

    def argv(self, spec: EngineSpec, settings: Settings) -> list[str]:
        from zoe_panel.errors import BinaryNotFound

        ok, detail = self.available(settings)
        if not ok:
            raise BinaryNotFound(detail)
        return vllm_argv(detail, spec)

    def env_for(self, spec: EngineSpec, settings: Settings) -> dict[str, str]:
        from zoe_panel.engine.vllm_support import private_env

        env = private_env(settings.state_dir)
        env["VLLM_CPU_KVCACHE_SPACE"] = str(kv_space_gib(spec))  # never left unset: it then fails at start
        if spec.api_key:
            env["VLLM_API_KEY"] = spec.api_key
        if spec.threads:
            env["OMP_NUM_THREADS"] = str(spec.threads)
        return env

    def docker_image(self, settings: Settings, llama_image: str) -> str:
        """The vLLM image: the setting, else the one matched to this Jetson's L4T, else vLLM's own."""
        from zoe_panel.errors import ConfigError
        from zoe_panel.l4t import proposed_vllm_images, read_l4t

        if settings.docker_vllm_image:
            return settings.docker_vllm_image
        l4t = read_l4t(settings.tegra_release)
        proposal = proposed_vllm_images(l4t)
        if not proposal:
            raise ConfigError(
                f"no vLLM image is known for L4T {l4t.version if l4t else '?'}: set docker_vllm_image (Settings) "
                "to one built for it (jetson-containers), or run vLLM on the process backend"
            )
        return proposal[0]

    def container_argv(self, spec: EngineSpec, binary: str, caps: Capabilities) -> list[str]:
        # the images carry vLLM in their system Python; the model folder sits beside the GGUF, under /models
        return vllm_argv("python3", spec)

    def container_env(self, spec: EngineSpec, gpu: str) -> dict[str, str]:
        env = {"HF_HUB_OFFLINE": "1"}  # the folder is local: never reach for the Hub from the board
        if gpu == "none":  # vLLM's CPU build: its KV space must always be set
            env["VLLM_CPU_KVCACHE_SPACE"] = str(kv_space_gib(spec))
        if spec.api_key:
            env["VLLM_API_KEY"] = spec.api_key
        return env

    def native_command(self, spec: EngineSpec, settings: Settings) -> str:
        env = f"VLLM_CPU_KVCACHE_SPACE={kv_space_gib(spec)} " + (
            'VLLM_API_KEY="$ZOE_ENGINE_API_KEY" ' if spec.api_key else ""
        )
        return env + shlex.join(vllm_argv("python3", spec))

    def version(self, settings: Settings) -> str:
        from zoe_panel.engine.vllm_support import venv_dir

        for meta in venv_dir(settings.cache_dir).glob("lib/python*/site-packages/vllm*.dist-info"):
            return meta.name.removesuffix(".dist-info").replace("_", "-")
        return ""


def vllm_argv(python: str, spec: EngineSpec) -> list[str]:
    from zoe_panel.engine.vllm_support import SERVER_MODULE

    return [
        python,
        "-m",
        SERVER_MODULE,
        "--model",
        str(hf_dir(spec.model)),
        "--served-model-name",
        spec.alias or Path(spec.model).stem,
        "--host",
        spec.host,
        "--port",
        str(spec.port),
        "--max-model-len",
        str(spec.ctx),
        "--max-num-seqs",
        str(max(1, spec.parallel)),
        # bf16 compiled is right on the CPU; --enforce-eager with bf16 gave wrong text (REFERENCE §13);
        # a quantized folder's method and dtype instead
        *(quantization_args(spec) or ["--dtype", "bfloat16"]),
        # the reply cap of a request without max_tokens, as llama-server's -n: vLLM would otherwise
        # generate up to the end of the context for a careless client
        *(
            ["--override-generation-config", json.dumps({"max_new_tokens": spec.n_predict})]
            if spec.n_predict > 0
            else []
        ),
        # last, so that an operator's --dtype (float32 where AMX traps) wins over the one above
        *check_extra_args(spec.extra_args, VLLM_EXTRA_FLAGS),
    ]


FLAVOR = Vllm(
    name="vllm",
    label="vLLM (OpenAI-compatible server)",
    readiness_path="/health",
    splits_slots=True,
    grows_after_load=False,
    memory_model="vllm",
    runs_in_docker=True,
    api_key_env="VLLM_API_KEY",
    image_has_llama_server=False,
    ready_markers=("Application startup complete",),
    safe_rebuild=("where AMX traps, run vLLM with ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 and --dtype float32",),
)
