"""Admission by prediction: which models a router engine may hold at once.

Before a model the panel is asked to load goes into the router, its predicted memory (the same
estimate the Engine page shows, for the model's preset) is checked against a budget: the
``router_budget_mib`` setting, or what is available now plus what the loaded models are predicted
to hold, minus the safety floor (``memory_floor_mib``). The least recently used models are unloaded
first until the new one fits; a model that alone would not fit is refused with the numbers. The
router itself runs with ``--no-models-autoload``, so a client naming an unloaded model gets HTTP 400
"model is not loaded" and nothing loads behind this policy's back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoe_panel.engine.flavors import ModelSlot
from zoe_panel.engine.flavors.router import model_id, write_presets
from zoe_panel.errors import EngineError
from zoe_panel.jsonfile import read_cache, write_json_atomic

MIB = 1024 * 1024


@dataclass(frozen=True)
class Decision:
    load: str
    unload_first: tuple[str, ...]
    need_bytes: int
    budget_bytes: int
    in_use_after_bytes: int  # predicted, the loaded models plus this one, after the unloads

    def text(self) -> str:
        first = f"unload {', '.join(self.unload_first)} first, then " if self.unload_first else ""
        return (
            f"{first}load {self.load}: {self.need_bytes / MIB:.0f} MiB predicted, "
            f"{self.in_use_after_bytes / MIB:.0f} of {self.budget_bytes / MIB:.0f} MiB in use after"
        )


def plan(name: str, predicted: dict[str, int], loaded_oldest_first: list[str], budget: int) -> Decision:
    """Pure: which loaded models go (least recently used first) so that ``name`` fits the budget."""
    need = predicted[name]
    if need > budget:
        raise EngineError(
            f"{name} alone is predicted to need {need / MIB:.0f} MiB, more than the budget of "
            f"{budget / MIB:.0f} MiB: refused (lower its context or use a q8_0 cache in its preset, or "
            "raise router_budget_mib)"
        )
    others = [m for m in loaded_oldest_first if m != name]
    in_use = sum(predicted.get(m, 0) for m in others)
    evict: list[str] = []
    for m in others:
        if in_use + need <= budget:
            break
        evict.append(m)
        in_use -= predicted.get(m, 0)
    return Decision(name, tuple(evict), need, budget, in_use + need)


class Admission:
    """The panel's policy for a router engine, and the presets file the router starts with."""

    def __init__(
        self,
        state_dir: Path,
        *,
        predict: Callable[[str], int],
        preset_args: Callable[[str], dict[str, Any]],
        model_files: Callable[[], list[str]],
        available: Callable[[], int],
        budget_mib: Callable[[], int],
        floor_mib: Callable[[], int],
    ) -> None:
        self.usage_file = state_dir / "router-usage.json"
        self.run_budget_file = state_dir / "router-budget.json"
        self.presets_file = state_dir / "router-presets.ini"
        self.predict = predict
        self.preset_args = preset_args
        self.model_files = model_files
        self.available = available
        self.budget_mib = budget_mib
        self.floor_mib = floor_mib
        self.decisions: list[Decision] = []

    def write_presets(self) -> Path:
        """One section per model of the library, from its preset (saved, or the computed default)."""
        sections = {model_id(f): self.preset_args(f) for f in self.model_files()}
        write_presets(self.presets_file, sections)
        return self.presets_file

    def touch(self, name: str) -> None:
        """Record a use (a load, a chat through the panel): the least recently used go first."""
        usage = read_cache(self.usage_file, dict)
        usage[model_id(name)] = time.time()
        write_json_atomic(self.usage_file, usage)

    def set_run_budget(self, mib: int) -> None:
        """A budget for this router run (start --budget-mib): it outranks the setting until the next start."""
        write_json_atomic(self.run_budget_file, {"budget_mib": int(mib)})

    def budget(self, loaded: list[str], predicted: dict[str, int]) -> int:
        run = read_cache(self.run_budget_file, dict).get("budget_mib")
        mib = int(run) if isinstance(run, int) and run > 0 else self.budget_mib()
        if mib > 0:
            return mib * MIB
        held = sum(predicted.get(m, 0) for m in loaded)
        return max(0, self.available() + held - self.floor_mib() * MIB)

    def __call__(self, name: str, slots: list[ModelSlot]) -> list[str]:
        """The ``admit`` hook of EngineService.load_model: the models to unload first."""
        target = model_id(name)
        loaded = [s.name for s in slots if s.state in ("loaded", "loading")]
        usage = read_cache(self.usage_file, dict)
        loaded.sort(key=lambda m: float(usage.get(m, 0.0)))
        predicted = {m: self.predict(m) for m in {*loaded, target}}
        decision = plan(target, predicted, loaded, self.budget(loaded, predicted))
        self.decisions.append(decision)
        self.touch(target)
        return list(decision.unload_first)
