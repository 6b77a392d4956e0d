"""Jetson facts: L4T release, the CUDA it ships, the engine images that match, power mode.

Everything reads files (``/etc/nv_tegra_release``, ``/etc/nvpmodel.conf``,
``/var/lib/nvpmodel/status``) through paths that tests point at a simulated board.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_RELEASE_RE = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)")

# L4T major.minor -> (JetPack, CUDA the BSP ships). NVIDIA's JetPack archive; R36.4 is JetPack 6.1/6.2.
L4T_TABLE: dict[str, tuple[str, str]] = {
    "36.4": ("6.1 / 6.2", "12.6"),
    "36.3": ("6.0", "12.2"),
    "36.2": ("6.0 DP", "12.2"),
    "35.6": ("5.1.4", "11.4"),
    "35.5": ("5.1.3", "11.4"),
    "35.4": ("5.1.2", "11.4"),
    "35.3": ("5.1.1", "11.4"),
}

# Engine images proposed per L4T major.minor, best first. jetson-containers tags (REFERENCE.md §6):
# r36.4.0 carries llama.cpp b4579 (Jan 2025); the cu128 builds are newer llama.cpp and were
# reported to run on JetPack 6 drivers despite the label.
IMAGE_TABLE: dict[str, tuple[str, ...]] = {
    "36.4": ("dustynv/llama_cpp:0.3.9-r36.4.0-cu128-24.04", "dustynv/llama_cpp:r36.4.0"),
    "36.3": ("dustynv/llama_cpp:r36.2.0",),
    "36.2": ("dustynv/llama_cpp:r36.2.0",),
    "35.4": ("dustynv/llama_cpp:r35.4.1",),
}


# vLLM images per L4T major.minor, best first. NVIDIA-AI-IOT's builds (vLLM 0.11) replaced
# jetson-containers' dustynv/vllm, whose last r36.4 build is vLLM 0.8.6 (the seed ran a dustynv one).
VLLM_IMAGE_TABLE: dict[str, tuple[str, ...]] = {
    "36.4": ("ghcr.io/nvidia-ai-iot/vllm:latest-jetson-orin", "dustynv/vllm:0.8.6-r36.4-cu128-24.04"),
}
VLLM_IMAGE_OTHER = "vllm/vllm-openai:latest"  # vLLM's own image, for a discrete NVIDIA GPU


@dataclass(frozen=True)
class L4T:
    major: int
    revision: str  # "4.3"
    raw: str

    @property
    def version(self) -> str:
        return f"{self.major}.{self.revision}"

    @property
    def key(self) -> str:
        return f"{self.major}.{self.revision.split('.')[0]}"

    @property
    def jetpack(self) -> str:
        return L4T_TABLE.get(self.key, ("unknown", ""))[0]

    @property
    def cuda(self) -> str:
        return L4T_TABLE.get(self.key, ("", ""))[1]


def read_l4t(path: Path = Path("/etc/nv_tegra_release")) -> L4T | None:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    m = _RELEASE_RE.search(text)
    if not m:
        return None
    return L4T(int(m[1]), m[2], text.splitlines()[0] if text else "")


def proposed_images(l4t: L4T | None) -> tuple[str, ...]:
    if l4t is None:
        return ()
    return IMAGE_TABLE.get(l4t.key, ())


def proposed_vllm_images(l4t: L4T | None) -> tuple[str, ...]:
    if l4t is None:
        return (VLLM_IMAGE_OTHER,)
    return VLLM_IMAGE_TABLE.get(l4t.key, ())


def cuda_tuple(version: str) -> tuple[int, int] | None:
    m = re.match(r"(\d+)\.(\d+)", version or "")
    return (int(m[1]), int(m[2])) if m else None


def cuda_mismatch(image_cuda: str, host_cuda: str, *, image_tag: str = "") -> str:
    """'' when the image's CUDA runtime can run on the host's driver, else what to do."""
    img, host = cuda_tuple(image_cuda), cuda_tuple(host_cuda)
    if img is None or host is None or img <= host:
        return ""
    if img[0] == host[0] == 12 and "cu12" in image_tag:
        return ""  # CUDA 12 minor-version compatibility: the cu128 jetson-containers builds run on 12.6 drivers
    return (
        f"the image was built for CUDA {image_cuda} but this machine's driver supports CUDA {host_cuda}: "
        "pick an image built for your L4T (python -m zoe_panel jetson-check proposes one) or update JetPack"
    )


def power_mode(
    nvpmodel_conf: Path = Path("/etc/nvpmodel.conf"), status: Path = Path("/var/lib/nvpmodel/status")
) -> str:
    """The current nvpmodel mode's name, looked up by id (ids differ between boards)."""
    try:
        mode_id = re.search(r"pmode:(\d+)", status.read_text())
    except OSError:
        mode_id = None
    try:
        conf = nvpmodel_conf.read_text()
    except OSError:
        return ""
    names = dict(re.findall(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=(\S+)\s*>", conf))
    default = re.search(r"PM_CONFIG\s+DEFAULT=(\d+)", conf)
    current = mode_id[1].lstrip("0") or "0" if mode_id else (default[1] if default else None)
    return names.get(current or "", "") if current is not None else ""


def power_modes(nvpmodel_conf: Path = Path("/etc/nvpmodel.conf")) -> list[tuple[int, str]]:
    """Every mode the board offers, as (id, name), from nvpmodel.conf; [] off a Jetson."""
    try:
        conf = nvpmodel_conf.read_text()
    except OSError:
        return []
    return [(int(i), n) for i, n in re.findall(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=(\S+)\s*>", conf)]


def arch_support_note(architecture: str, engine_build: int | None) -> str:
    """Warn when the model's architecture is newer than the engine build (first llama.cpp build
    that loads it, from llama.cpp's release notes; builds <= 1 are source builds without a number)."""
    first = ARCH_FIRST_BUILD.get(architecture)
    if first is None or engine_build is None or engine_build <= 1:
        return ""
    if engine_build < first:
        return (
            f"this engine is llama.cpp build {engine_build}; the '{architecture}' architecture needs build "
            f"{first} or newer: pick a newer image or the native llama-server"
        )
    return ""


ARCH_FIRST_BUILD: dict[str, int] = {
    "gemma3": 4877,
    "llama4": 5074,
    "qwen3": 5092,
    "qwen3moe": 5092,
    "gemma3n": 5757,
    "smollm3": 5849,
    "gpt-oss": 6096,
    "openai-moe": 6096,
    "qwen3next": 6852,
    "granitehybrid": 6129,
    "lfm2": 5826,
    "gemma4": 8600,
}
