"""Per-model launch presets: what the Engine page starts from when the model is picked.

With no saved preset, the default is the largest context the memory estimate says fits (f16 KV
cache, the panel's other defaults)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from filelock import FileLock

from zoe_panel.engine import defaults
from zoe_panel.engine.argv import check_extra_args
from zoe_panel.engine.base import CACHE_TYPES, FLASH_ATTN
from zoe_panel.errors import ConfigError
from zoe_panel.jsonfile import read_cache, write_json_atomic


@dataclass(frozen=True)
class Preset:
    ctx: int = defaults.CTX
    n_gpu_layers: int = defaults.N_GPU_LAYERS
    cache_type_k: str = defaults.CACHE_TYPE
    cache_type_v: str = defaults.CACHE_TYPE
    flash_attn: str = defaults.FLASH_ATTN
    parallel: int = defaults.PARALLEL
    kv_unified: bool = defaults.KV_UNIFIED
    threads: int = defaults.THREADS
    ubatch: int = defaults.UBATCH
    spec_type: str = ""  # speculative decoding: an n-gram mode, or draft-simple with draft_model
    draft_model: str = ""
    draft_max: int = 0
    extra_args: tuple[str, ...] = field(default_factory=tuple)
    saved: bool = False  # False: computed default, not stored by the operator

    def __post_init__(self) -> None:
        if self.cache_type_k not in CACHE_TYPES or self.cache_type_v not in CACHE_TYPES:
            raise ConfigError("preset cache types must be one of " + ", ".join(CACHE_TYPES))
        if self.flash_attn not in FLASH_ATTN:
            raise ConfigError("preset flash attention must be auto, on or off")
        if not 256 <= self.ctx <= 4_194_304 or not 1 <= self.parallel <= 256:
            raise ConfigError("preset context must be 256..4194304 and slots 1..256")
        check_extra_args(list(self.extra_args))

    def spec_fields(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "saved"}


class PresetStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, Any]:
        return read_cache(self.path, dict)

    def get(self, model: str) -> Preset | None:
        raw = self._load().get(model)
        if not raw:
            return None
        known = {f.name for f in fields(Preset)}
        clean = {k: v for k, v in raw.items() if k in known}
        clean["extra_args"] = tuple(clean.get("extra_args", ()))
        return Preset(**{**clean, "saved": True})

    def save(self, model: str, preset: Preset) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path) + ".lock", timeout=10):
            data = self._load()
            entry = asdict(preset)
            entry.pop("saved")
            entry["extra_args"] = list(preset.extra_args)
            data[model] = entry
            write_json_atomic(self.path, data, indent=1)

    def delete(self, model: str) -> None:
        with FileLock(str(self.path) + ".lock", timeout=10):
            data = self._load()
            if data.pop(model, None) is not None:
                write_json_atomic(self.path, data, indent=1)
