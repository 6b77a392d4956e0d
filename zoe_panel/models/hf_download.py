"""A Hugging Face repository downloaded into the library as a folder vLLM serves (``<name>.hf``).

Only what vLLM loads is fetched: the config, tokenizer and chat-template files and the safetensors
weights (only the shards the index names, so a repo that also carries ``consolidated.safetensors``
is not fetched twice). Pickled ``.bin`` weights are refused: loading them runs code. The config is
read first, before any weights, so a repo that cannot be served is refused with nothing fetched.
Files go through the same path as GGUF downloads (``download.fetch_files``): progress, Cancel,
resume, the Hub's sha256; the folder is renamed into the library only once every header is sound.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from zoe_panel.engine.flavors.vllm import HF_SUFFIX
from zoe_panel.errors import DownloadError, InvalidModelError, ModelStoreError
from zoe_panel.models.download import (
    STAGING,
    RemoteFile,
    _discard,
    _first_line,
    check_space,
    fetch_files,
    repo_files,
)
from zoe_panel.models.fit_vllm import DTYPE_WIDTH
from zoe_panel.models.hf_model import (
    PICKLED,
    SOURCE_FILE,
    HfModel,
    Safetensors,
    hf_shape,
    read_hf_model,
    read_safetensors_header,
)
from zoe_panel.models.library import shown
from zoe_panel.models.store import ModelStore

# top-level files vLLM reads besides the weights (tokenizers, templates, generation defaults)
SUPPORT_SUFFIXES = (".json", ".model", ".txt", ".tiktoken", ".jinja")
SKIPPED_NAMES = ("README.md", ".gitattributes")


@dataclass(frozen=True)
class HfRepoPlan:
    """What a download of the repo fetches, decided from its file list and config."""

    repo_id: str
    revision: str
    commit: str
    files: tuple[RemoteFile, ...]
    architecture: str
    quant_method: str
    config: dict[str, object] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def weights(self) -> list[RemoteFile]:
        return [f for f in self.files if f.name.endswith(".safetensors")]


def folder_name(repo_id: str, name: str | None = None) -> str:
    """``owner/Model-AWQ`` -> ``Model-AWQ.hf``; a given name is checked as any library name."""
    text = (name or repo_id.rsplit("/", 1)[-1]).strip().removesuffix(HF_SUFFIX)
    if not text or text.startswith(".") or "/" in text or "\\" in text or not re.fullmatch(r"[\w.+-]{1,200}", text):
        raise ModelStoreError(f"{shown(text)} is not a valid folder name (letters, digits, '.', '-', '_', '+')")
    return text + HF_SUFFIX


def plan_repo(
    repo_id: str, *, revision: str = "main", endpoint: str | None = None, token: str | None = None
) -> HfRepoPlan:
    """The files to fetch, after the repo's config says vLLM can serve it (nothing is kept yet)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError

    files, commit = repo_files(repo_id, revision=revision, endpoint=endpoint, token=token)
    listed = {f.name: f for f in files}
    top = {n: f for n, f in listed.items() if "/" not in n}
    if "config.json" not in top:
        if any(n.lower().endswith(".gguf") for n in listed):
            raise DownloadError(
                f"{repo_id} holds GGUF files, not a Hugging Face model: download them for llama.cpp (Models page)"
            )
        raise DownloadError(f"{repo_id} has no config.json: not a Hugging Face model vLLM can serve")
    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
    token = token or os.environ.get("HF_TOKEN")

    def small_json(name: str) -> dict[str, object]:
        try:  # a few KB, before any weights; into a temporary folder, not the user's Hub cache
            with tempfile.TemporaryDirectory(prefix="zoe-hf-") as tmp:
                got = hf_hub_download(repo_id, name, revision=revision, local_dir=tmp, endpoint=endpoint, token=token)
                loaded = json.loads(Path(got).read_text())
        except (HfHubHTTPError, OSError, ValueError) as e:
            raise DownloadError(f"cannot read {repo_id}'s {name}: {_first_line(e)}") from None
        if not isinstance(loaded, dict):
            raise DownloadError(f"{repo_id}'s {name} is not a JSON object")
        return loaded

    config = small_json("config.json")
    archs = config.get("architectures")
    arch = str(archs[0]) if isinstance(archs, list) and archs else str(config.get("model_type") or "")
    if not arch:
        raise DownloadError(f"{repo_id}'s config.json names no architecture: not a model vLLM can serve")
    qcfg = config.get("quantization_config")
    quant = str(qcfg.get("quant_method", "")).lower() if isinstance(qcfg, dict) else ""
    if "model.safetensors.index.json" in top:
        index = small_json("model.safetensors.index.json")
        wmap = index.get("weight_map")
        shards = sorted({str(v) for v in wmap.values()}) if isinstance(wmap, dict) else []
        missing = [s for s in shards if s not in top]
        if not shards or missing:
            raise DownloadError(f"{repo_id}: its weight index names shards the repo does not have ({missing[:3]})")
    else:
        shards = [n for n in top if n.endswith(".safetensors")]
        if len(shards) > 1:  # Mistral-style repos carry the same weights twice
            shards = [n for n in shards if not n.startswith("consolidated")] or shards
    if not shards:
        pickled = [n for n in top if n.endswith(PICKLED)]
        if pickled:
            raise DownloadError(
                f"{repo_id} has only pickled PyTorch weights ({', '.join(pickled[:3])}): the panel fetches "
                "safetensors only, since loading a pickle runs code"
            )
        raise DownloadError(f"{repo_id} has no safetensors weights")
    support = [n for n in top if n.endswith(SUPPORT_SUFFIXES) and n not in SKIPPED_NAMES and not n.startswith(".")]
    names = sorted(set(support)) + shards
    return HfRepoPlan(repo_id, revision, commit, tuple(top[n] for n in names), arch, quant, config)


def planned_model(plan: HfRepoPlan, name: str | None = None) -> HfModel:
    """The folder as it will be, before any weights are fetched: its shape from the config, its
    weights from the shards' sizes (parameters = bytes / the checkpoint dtype's width; a quantized
    repo is counted as packed, as on disk)."""
    weights = sum(f.size for f in plan.weights)
    dtype = str(plan.config.get("torch_dtype") or plan.config.get("dtype") or "bfloat16")
    width = DTYPE_WIDTH.get(dtype, 2)
    qcfg = plan.config.get("quantization_config")
    bits = int(qcfg.get("bits", 0) or 0) if isinstance(qcfg, dict) else 0
    params = weights // width if not plan.quant_method else 0
    shards = (Safetensors(Path("model.safetensors"), 0, params, weights, ()),)
    return HfModel(
        path=Path(folder_name(plan.repo_id, name)),
        name=folder_name(plan.repo_id, name).removesuffix(HF_SUFFIX),
        architecture=plan.architecture,
        model_type=str(plan.config.get("model_type") or ""),
        dtype=dtype,
        quant_method=plan.quant_method,
        quant_bits=bits,
        weights=shards,
        shape=hf_shape(plan.config),
        source={"repo": plan.repo_id, "revision": plan.revision},
    )


def _check_file(path: Path) -> None:
    """Each weights file's header against its size, as it arrives (a truncated shard is refused)."""
    if path.name.endswith(".safetensors"):
        try:
            read_safetensors_header(path)
        except InvalidModelError as e:
            path.unlink(missing_ok=True)
            raise ModelStoreError(str(e)) from None


def download_repo(
    store: ModelStore,
    plan: HfRepoPlan,
    *,
    name: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    margin_bytes: int = 1 << 30,
    progress: Callable[[int, int], None] = lambda done, total: None,
    cancel: threading.Event | None = None,
) -> Path:
    """Fetch the plan's files and rename them into the library as one folder; return it."""
    cancel = cancel or threading.Event()
    root = store.ensure_root().resolve()
    target = root / folder_name(plan.repo_id, name)
    if target.exists():
        raise DownloadError(f"{target.name} is already in the library")
    check_space(root, plan.size, margin_bytes)
    staging = root / STAGING / re.sub(r"[^\w.-]", "_", f"{plan.repo_id}--hf")
    staging.mkdir(parents=True, exist_ok=True)
    try:
        fetch_files(
            plan.repo_id,
            plan.files,
            staging,
            revision=plan.revision,
            endpoint=endpoint,
            token=token,
            cancel=cancel,
            progress=progress,
            check=_check_file,
        )
    except ModelStoreError as e:  # a file whose header is not sound: the staging folder is gone
        raise DownloadError(f"{plan.repo_id}: {e}; nothing was kept") from None
    try:
        shutil.rmtree(staging / ".cache", ignore_errors=True)  # huggingface_hub's bookkeeping
        source = {"repo": plan.repo_id, "revision": plan.revision, "commit": plan.commit, "fetched_at": time.time()}
        (staging / SOURCE_FILE).write_text(json.dumps(source))
        read_hf_model(staging)  # the whole folder as vLLM will load it
        os.replace(staging, target)
    except (InvalidModelError, OSError) as e:
        _discard(staging)
        raise DownloadError(f"{plan.repo_id}: {e}; nothing was kept") from None
    try:
        staging.parent.rmdir()
    except OSError:
        pass
    return target
