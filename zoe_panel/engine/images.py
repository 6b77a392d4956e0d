"""Engine images: inspect, pull with progress (never silently), and learn each image's llama.cpp
build once (``llama-server --version`` / ``--help`` in a throwaway container, cached per image id).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoe_panel.engine.argv import Capabilities
from zoe_panel.errors import DockerUnavailable, DownloadError
from zoe_panel.jsonfile import read_cache, write_json_atomic


class ImageMissing(DockerUnavailable):
    """The image is not on this machine; the UI offers a pull."""

    def __init__(self, image: str) -> None:
        super().__init__(
            f"engine image {image} is not on this machine: pull it first (Engine page → Pull image, "
            f"or: docker pull {image})"
        )
        self.image = image


@dataclass(frozen=True)
class ImageInfo:
    ref: str
    id: str
    size_bytes: int
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def cuda_version(self) -> str:
        return self.env.get("CUDA_VERSION", "") or self.labels.get("com.nvidia.cuda.version", "")


@dataclass
class PullProgress:
    """The daemon's pull stream folded into one fraction that only moves forward: per layer, bytes
    downloaded plus bytes extracted over twice its size; layers already here count as done."""

    layers: dict[str, list[int]] = field(default_factory=dict)  # id -> [downloaded, extracted, total]
    status: str = ""
    done: bool = False
    _best: float = 0.0

    def update(self, event: dict[str, Any]) -> None:
        if "error" in event:
            raise DownloadError(f"pull failed: {event.get('error')}")
        self.status = str(event.get("status", ""))
        if self.status.startswith("Status:"):
            self.done = True
        layer = event.get("id")
        if not layer or self.status.startswith("Pulling from"):
            return
        rec = self.layers.setdefault(layer, [0, 0, 0])
        detail = event.get("progressDetail") or {}
        if detail.get("total"):
            rec[2] = int(detail["total"])
        if self.status == "Downloading":
            rec[0] = int(detail.get("current", 0))
        elif self.status == "Download complete":
            rec[0] = rec[2]
        elif self.status == "Extracting":
            rec[0] = rec[2]
            rec[1] = int(detail.get("current", 0))
        elif self.status in ("Pull complete", "Already exists"):
            rec[0] = rec[1] = rec[2] = rec[2] or 1

    @property
    def fraction(self) -> float:
        if self.done:
            return 1.0
        total = sum(2 * t for _, _, t in self.layers.values())
        now = sum(d + e for d, e, _ in self.layers.values()) / total if total else 0.0
        self._best = max(self._best, min(now, 0.999))
        return self._best


def split_ref(ref: str) -> tuple[str, str]:
    """'repo:tag' -> (repo, tag); a ':' inside a registry host:port is not a tag."""
    if "@" in ref:
        return ref.split("@", 1)[0], ref.split("@", 1)[1]
    head, _, last = ref.rpartition("/")
    if ":" in last:
        name, tag = last.rsplit(":", 1)
        return (f"{head}/{name}" if head else name), tag
    return ref, "latest"


class ImageManager:
    def __init__(self, client: Any, cache_file: Path) -> None:
        self.client = client
        self.cache_file = cache_file

    def inspect(self, ref: str) -> ImageInfo:
        import docker

        try:
            img = self.client.images.get(ref)
        except docker.errors.ImageNotFound:
            raise ImageMissing(ref) from None
        except docker.errors.APIError as e:
            raise DockerUnavailable(f"cannot inspect image {ref}: {e.explanation or e}") from None
        cfg = img.attrs.get("Config") or {}
        env = dict(x.split("=", 1) for x in (cfg.get("Env") or []) if "=" in x)
        return ImageInfo(ref, img.id, int(img.attrs.get("Size", 0)), env, dict(cfg.get("Labels") or {}))

    def pull(self, ref: str, on_progress: Callable[[PullProgress], None] | None = None) -> ImageInfo:
        import docker

        repo, tag = split_ref(ref)
        progress = PullProgress()
        try:
            for event in self.client.api.pull(repo, tag=tag, stream=True, decode=True):
                progress.update(event)
                if on_progress:
                    on_progress(progress)
        except docker.errors.APIError as e:
            raise DownloadError(f"pull of {ref} failed: {e.explanation or e}") from None
        return self.inspect(ref)

    def capabilities(self, ref: str, binary: str) -> Capabilities:
        info = self.inspect(ref)
        cache = self._load()
        key = f"{info.id}:{binary}"
        if "flags" in cache.get(key, {}):  # entries without flags predate the check
            return Capabilities.from_dict(cache[key])
        version = self._run(ref, [binary, "--version"])
        help_text = self._run(ref, [binary, "--help"])
        caps = Capabilities.from_help(help_text, version)
        cache[key] = caps.to_dict()
        self._save(cache)
        return caps

    def _run(self, ref: str, command: list[str]) -> str:
        import docker

        try:
            out = self.client.containers.run(
                ref, command=command, remove=True, stdout=True, stderr=True, network_mode="none"
            )
        except docker.errors.ContainerError as e:
            out = (e.stderr or b"") if isinstance(e.stderr, bytes) else str(e.stderr or "").encode()
        except docker.errors.APIError as e:
            raise DockerUnavailable(
                f"cannot run {command[0]} in {ref}: {e.explanation or e}; "
                "set the binary's path in Settings (docker_llama_server)"
            ) from None
        return out.decode("utf-8", "replace") if isinstance(out, bytes) else str(out)

    def _load(self) -> dict[str, Any]:
        return read_cache(self.cache_file, dict)

    def _save(self, cache: dict[str, Any]) -> None:
        try:
            write_json_atomic(self.cache_file, cache, indent=1)
        except OSError:
            pass
