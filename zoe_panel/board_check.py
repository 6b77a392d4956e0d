"""``python -m zoe_panel jetson-check``: what a board owner runs first.

L4T and JetPack, the CUDA the BSP ships, Docker and its runtimes, the jtop service, the chosen
engine image and whether it matches, free memory, power mode, and a list of what to fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zoe_panel.engine.docker import DockerEngine
from zoe_panel.errors import ZoePanelError
from zoe_panel.l4t import cuda_mismatch, power_mode, power_modes, proposed_images, read_l4t
from zoe_panel.settings import Settings
from zoe_panel.telemetry.host import HostSource


@dataclass
class CheckReport:
    facts: dict[str, Any] = field(default_factory=dict)
    fixes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.fixes

    def text(self) -> str:
        width = max(len(k) for k in self.facts) if self.facts else 10
        lines = [f"{k:<{width}}  {v}" for k, v in self.facts.items()]
        lines.append("")
        lines += ["what to fix:", *[f"  - {f}" for f in self.fixes]] if self.fixes else ["nothing to fix"]
        return "\n".join(lines)


def jetson_check(settings: Settings, docker: DockerEngine | None = None) -> CheckReport:
    r = CheckReport()
    l4t = read_l4t(settings.tegra_release)
    if l4t is None:
        r.facts["L4T"] = f"not a Jetson ({settings.tegra_release} missing or unreadable)"
        r.fixes.append("run this on the Jetson itself; on other Linux machines the native engine is used")
    else:
        r.facts.update({"L4T": l4t.version, "JetPack": l4t.jetpack, "CUDA (BSP)": l4t.cuda or "unknown"})
        if not l4t.cuda:
            r.fixes.append(f"L4T {l4t.version} is not in the panel's table: set docker_image by hand")
    _native_build(settings, r)
    _docker(settings, r, l4t, docker or DockerEngine(settings))
    sock = settings.jtop_socket
    r.facts["jtop service"] = f"socket {sock} present" if sock.exists() else f"no socket at {sock}"
    if l4t is not None and not sock.exists():
        r.fixes.append("install jetson-stats for GPU telemetry: sudo pip3 install -U jetson-stats, then reboot")
    mem = HostSource().sample()
    r.facts["memory"] = f"{mem.ram_available_bytes / 2**30:.1f} GiB available of {mem.ram_total_bytes / 2**30:.1f} GiB"
    mode = power_mode(settings.nvpmodel_conf, settings.nvpmodel_status)
    r.facts["power mode"] = mode or "unknown (no nvpmodel.conf)"
    modes = power_modes(settings.nvpmodel_conf)
    if modes:
        r.facts["power modes"] = ", ".join(f"{name} (nvpmodel -m {i})" for i, name in modes)
    if mode and mode not in ("MAXN", "MAXN_SUPER"):
        r.fixes.append(
            f"power mode is {mode}: for full speed use MAXN (sudo nvpmodel -m <MAXN id>; sudo jetson_clocks)"
        )
    return r


def _native_build(settings: Settings, r: CheckReport) -> None:
    """The native llama-server this machine would run, and the variant it was built as."""
    from zoe_panel.engine.binary import build_of, find_llama_server

    try:
        binary = find_llama_server(settings)
    except ZoePanelError as e:
        r.facts["native engine"] = "none"
        r.fixes.append(str(e))
        return
    build = build_of(settings, binary)
    r.facts["native engine"] = binary + (f": {build}" if build else " (not built by the panel; not smoke-checked)")


def _docker(settings: Settings, r: CheckReport, l4t: Any, eng: DockerEngine) -> None:
    ok, detail = eng.is_available()
    r.facts["docker"] = detail
    if not ok:
        r.fixes.append("install and start Docker (JetPack: sudo apt install nvidia-container) or use the native engine")
        return
    runtimes = sorted((eng.client().info().get("Runtimes") or {}).keys())
    r.facts["docker runtimes"] = ", ".join(runtimes)
    if l4t is not None and settings.docker_runtime not in runtimes:
        r.fixes.append(
            f"Docker has no '{settings.docker_runtime}' runtime: sudo nvidia-ctk runtime configure "
            "--runtime=docker && sudo systemctl restart docker"
        )
    image = eng.image_ref()
    proposals = proposed_images(l4t)
    r.facts["engine image"] = image + (" (from the L4T table)" if not settings.docker_image and proposals else "")
    try:
        info = eng.images.inspect(image)
    except ZoePanelError:
        r.facts["image match"] = "image not on this machine"
        r.fixes.append(f"pull the engine image: docker pull {image} (or Engine page → Pull image)")
        return
    host_cuda = l4t.cuda if l4t is not None else eng.host_cuda()
    mismatch = cuda_mismatch(info.cuda_version, host_cuda, image_tag=image)
    r.facts["image match"] = f"image CUDA {info.cuda_version or 'n/a'} vs host {host_cuda or 'n/a'}: " + (
        "MISMATCH" if mismatch else "ok"
    )
    if mismatch:
        alt = [p for p in proposals if p != image]
        r.fixes.append(mismatch + (f" (suggested: {alt[0]})" if alt else ""))
