"""What was built, and where each build has been seen to work: ``<cache>/builds.json``.

One entry per build (its cache key names the variant), with the smoke result per machine
fingerprint, and the choice made per machine. The panel runs a cached build only when it has
decoded on this machine; a cache shared with another machine is smoke-run again there.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoe_panel.build.smoke import SmokeResult
from zoe_panel.jsonfile import read_cache, write_json_atomic

FILE = "builds.json"


@dataclass
class BuildRecord:
    key: str
    kind: str  # llama-server | llama-cpp-python
    path: str  # the binary (llama-server) or the wheel (llama-cpp-python)
    variant: str
    target: str
    version: str  # llama-cpp-python release whose vendored llama.cpp was built
    built_at: float = 0.0
    build_s: float = 0.0
    args: list[str] = field(default_factory=list)
    smoke: dict[str, dict[str, Any]] = field(default_factory=dict)  # machine fingerprint -> SmokeResult

    def smoke_on(self, fingerprint: str) -> SmokeResult | None:
        data = self.smoke.get(fingerprint)
        return SmokeResult.from_json(data) if isinstance(data, dict) else None

    def works_on(self, fingerprint: str) -> bool:
        result = self.smoke_on(fingerprint)
        return bool(result and result.ok) and Path(self.path).exists()

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BuildRecord | None:
        try:
            return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        except TypeError:
            return None


class BuildRecords:
    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self.file = cache / FILE

    @contextmanager
    def locked(self) -> Iterator[None]:
        """One build at a time per cache (two set-ups started together share the result)."""
        self.cache.mkdir(parents=True, exist_ok=True)
        with (self.cache / "build.lock").open("a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _read(self) -> dict[str, Any]:
        data = read_cache(self.file, dict)
        data.setdefault("builds", {})
        data.setdefault("choices", {})
        if not isinstance(data["builds"], dict) or not isinstance(data["choices"], dict):
            return {"builds": {}, "choices": {}}
        return data

    def get(self, key: str) -> BuildRecord | None:
        raw = self._read()["builds"].get(key)
        return BuildRecord.from_json(raw) if isinstance(raw, dict) else None

    def all(self) -> list[BuildRecord]:
        out = []
        for raw in self._read()["builds"].values():
            rec = BuildRecord.from_json(raw) if isinstance(raw, dict) else None
            if rec is not None:
                out.append(rec)
        return out

    def put(self, record: BuildRecord) -> None:
        data = self._read()
        data["builds"][record.key] = record.to_json()
        write_json_atomic(self.file, data, indent=1)

    def add_smoke(self, key: str, fingerprint: str, result: SmokeResult) -> None:
        data = self._read()
        entry = data["builds"].get(key)
        if isinstance(entry, dict):
            entry.setdefault("smoke", {})[fingerprint] = {**result.to_json(), "at": time.time()}
            write_json_atomic(self.file, data, indent=1)

    def choose(self, fingerprint: str, kind: str, target: str, key: str) -> None:
        data = self._read()
        data["choices"][f"{fingerprint}|{kind}|{target}"] = key
        write_json_atomic(self.file, data, indent=1)

    def forget_choice(self, fingerprint: str, kind: str, target: str) -> None:
        data = self._read()
        data["choices"].pop(f"{fingerprint}|{kind}|{target}", None)
        write_json_atomic(self.file, data, indent=1)

    def chosen(self, fingerprint: str, kind: str, target: str | None = None) -> BuildRecord | None:
        """The build chosen on this machine (for ``target``, else any: GPU targets first)."""
        choices = self._read()["choices"]
        keys = [
            v
            for k, v in choices.items()
            if k.startswith(f"{fingerprint}|{kind}|") and (target is None or k.endswith(f"|{target}"))
        ]
        records = [r for r in (self.get(k) for k in keys) if r is not None and r.works_on(fingerprint)]
        records.sort(key=lambda r: (r.target == "cpu", -r.built_at))
        return records[0] if records else None

    def for_path(self, path: str) -> BuildRecord | None:
        """The record of a built binary or wheel, by its path."""
        resolved = str(Path(path).resolve())
        for rec in self.all():
            if str(Path(rec.path).resolve()) == resolved:
                return rec
        return None
