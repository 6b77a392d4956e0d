"""Docker backend: llama-server in a container, the Jetson way (jetson-containers images).

Same lifecycle as the process backend. The container is found by its labels, so a panel restart
re-attaches; its state comes from the container's attributes plus the health probe. The image is
never pulled silently: a missing image is an ImageMissing error that the UI turns into a pull with
a progress bar.
"""

from __future__ import annotations

import calendar
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from zoe_panel.engine import flavors
from zoe_panel.engine.argv import Capabilities
from zoe_panel.engine.base import EngineSpec, EngineState, EngineStatus
from zoe_panel.engine.docker_status import ContainerView, RestartRule, should_arm_restart, spec_of, status_from_attrs
from zoe_panel.engine.export import MODELS_MOUNT, ContainerTarget
from zoe_panel.engine.health import check_port_free, probe
from zoe_panel.engine.images import ImageManager
from zoe_panel.errors import DockerUnavailable, EngineError, EngineNotRunning
from zoe_panel.jsonfile import StateFileError, make_private_dir, read_state, write_json_atomic
from zoe_panel.l4t import cuda_mismatch, proposed_images, read_l4t
from zoe_panel.settings import Settings

log = logging.getLogger(__name__)
LABEL = "zoe-panel.engine"
LOCAL_IMAGE = "zoe-panel/llama-server:local"


def docker_time(stamp: str) -> float:
    """RFC 3339 with nanoseconds ('2026-11-27T01:02:03.123456789Z') -> unix time (Python 3.10-safe)."""
    stamp = stamp.rstrip("Z")
    whole, _, frac = stamp.partition(".")
    base = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    return base + (float("0." + frac[:9]) if frac else 0.0)


class DockerEngine:
    name = "docker"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state_file = settings.state_dir / "engine" / "docker.json"
        self._client: Any = None
        self._down_until = 0.0
        self._down_reason = ""

    # -- daemon, image, GPU -------------------------------------------------------------
    def client(self) -> Any:
        if self._client is not None:
            try:
                self._client.ping()
                return self._client
            except Exception:  # noqa: BLE001 - daemon restarted or gone: reconnect below
                self._client = None
        if time.monotonic() < self._down_until:
            raise DockerUnavailable(self._down_reason)  # asked a moment ago: do not wait on it again
        try:
            import docker
        except ImportError:
            self._down_reason = (
                "the docker Python package is not installed (pip install docker): the Docker backend is unavailable"
            )
            self._down_until = time.monotonic() + 3600.0
            raise DockerUnavailable(self._down_reason) from None

        try:
            client = docker.from_env(timeout=15)
            client.ping()
        except docker.errors.DockerException as e:
            where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
            self._down_reason = (
                f"the Docker daemon is not reachable at {where} ({_short(e)}): start it "
                "(sudo systemctl start docker) or set DOCKER_HOST"
            )
            self._down_until = time.monotonic() + 5.0
            raise DockerUnavailable(self._down_reason) from None
        self._client = client
        return client

    @property
    def images(self) -> ImageManager:
        return ImageManager(self.client(), self.settings.state_dir / "images.json")

    def is_available(self) -> tuple[bool, str]:
        try:
            info = self.client().version()
        except DockerUnavailable as e:
            return False, str(e)
        return True, f"Docker {info.get('Version', '?')}"

    def has_engine_image(self) -> bool:
        try:
            self.images.inspect(self.image_ref())
        except EngineError:
            return False
        return True

    def build_info(self) -> str:
        """The running container's llama.cpp build and image, from what Start recorded."""
        state = self._state()
        if not state.get("engine_version"):
            return ""
        return f"{state['engine_version']} (build {state.get('engine_build')}, image {state.get('image')})"

    def image_ref(self, flavor: str | None = None) -> str:
        """The image a flavour's engine runs in (the settings' flavour when not named)."""
        if self.settings.docker_image:
            llama = self.settings.docker_image
        else:
            proposal = proposed_images(read_l4t(self.settings.tegra_release))
            llama = proposal[0] if proposal else LOCAL_IMAGE
        return flavors.get(flavor or self.settings.flavor).docker_image(self.settings, llama)

    def gpu_mode(self) -> str:
        if self.settings.docker_gpu != "auto":
            return self.settings.docker_gpu
        if self.settings.tegra_release.exists():
            return "runtime"  # Jetson: --runtime nvidia, as jetson-containers does
        if Path("/dev/nvidiactl").exists():
            return "device-requests"  # discrete NVIDIA GPU: --gpus all
        return "none"

    def host_cuda(self) -> str:
        l4t = read_l4t(self.settings.tegra_release)
        if l4t is not None:
            return l4t.cuda
        try:
            import pynvml

            pynvml.nvmlInit()
            v = pynvml.nvmlSystemGetCudaDriverVersion()
            return f"{v // 1000}.{v % 1000 // 10}"
        except Exception:  # noqa: BLE001 - no NVIDIA driver: nothing to check
            return ""

    def preflight(self, image: str, flavor: str | None = None) -> tuple[Capabilities, list[str]]:
        """Checks before a start: image present, CUDA match, runtime present. Returns caps + warnings."""
        info = self.images.inspect(image)
        mismatch = cuda_mismatch(info.cuda_version, self.host_cuda(), image_tag=image)
        if mismatch:
            raise DockerUnavailable(mismatch)
        if self.gpu_mode() == "runtime":
            runtimes = self.client().info().get("Runtimes") or {}
            if self.settings.docker_runtime not in runtimes:
                raise DockerUnavailable(
                    f"the Docker daemon has no '{self.settings.docker_runtime}' runtime (it has: "
                    f"{', '.join(sorted(runtimes)) or 'none'}): install nvidia-container-toolkit "
                    "(JetPack ships it), run 'sudo nvidia-ctk runtime configure --runtime=docker', restart docker"
                )
        if not flavors.get(flavor or self.settings.flavor).image_has_llama_server:
            return Capabilities(), []  # a vLLM image: nothing to ask a llama-server about
        caps = self.images.capabilities(image, self.settings.docker_llama_server)
        return caps, []

    # -- container ------------------------------------------------------------------------
    def target(self, image: str, caps: Capabilities | None = None) -> ContainerTarget:
        """Image, models mount and GPU wiring: the one description docker run, export and compose share."""
        return ContainerTarget(
            image=image,
            models_root=self.settings.models_path,
            binary=self.settings.docker_llama_server,
            gpu=self.gpu_mode(),
            runtime=self.settings.docker_runtime,
            caps=caps,
            jtop_socket=self.settings.jtop_socket.exists(),
        )

    def run_kwargs(self, spec: EngineSpec, run_id: str, caps: Capabilities, image: str) -> dict[str, Any]:
        """Everything docker run gets; a pure function of the spec and settings."""
        target = self.target(image, caps)
        flavor = flavors.get(spec.flavor)
        kwargs: dict[str, Any] = {
            "image": image,
            "command": target.argv(spec),
            "detach": True,
            "name": f"zoe-engine-{run_id}",
            "labels": {
                LABEL: "1",
                "zoe-panel.run-id": run_id,
                "zoe-panel.model": spec.model_name,
                "zoe-panel.spec-hash": spec.spec_hash(),
                "zoe-panel.spec": json.dumps(spec.public_json()),
            },
            "network_mode": "host",
            "volumes": {str(target.models_root.resolve()): {"bind": MODELS_MOUNT, "mode": "ro"}},
            "environment": flavor.container_env(spec, target.gpu),
            "shm_size": self.settings.docker_shm_size,
        }
        if target.gpu == "runtime":
            kwargs["runtime"] = target.runtime
            kwargs["environment"]["NVIDIA_DRIVER_CAPABILITIES"] = "compute,utility"
        elif target.gpu == "device-requests":
            from docker.types import DeviceRequest

            kwargs["device_requests"] = [DeviceRequest(count=-1, capabilities=[["gpu"]])]
        if target.jtop_socket:
            kwargs["volumes"][str(self.settings.jtop_socket)] = {"bind": "/run/jtop.sock", "mode": "rw"}
        # Docker's on-failure would also restart a failed load (OOM while allocating the KV cache),
        # which only fails again. Like the supervisor, the policy is armed once the engine has
        # loaded: the container starts with "no" and the first READY status arms it.
        kwargs["restart_policy"] = {"Name": "no"}
        return kwargs

    def _arm_restart(self, c: Any) -> None:
        try:
            c.update(restart_policy={"Name": "on-failure", "MaximumRetryCount": self.settings.restart_max})
        except Exception:  # noqa: BLE001 - next status poll tries again
            return
        c.attrs.setdefault("HostConfig", {})["RestartPolicy"] = {"Name": "on-failure"}

    def start(self, spec: EngineSpec, *, run_id: str) -> EngineStatus:
        if not flavors.get(spec.flavor).runs_in_docker:
            raise EngineError(f"the {spec.flavor} flavour does not run in a container: use the process backend")
        flavors.get(spec.flavor).check_model(spec)
        image = self.image_ref(spec.flavor)
        caps, _ = self.preflight(image, spec.flavor)  # raises DockerUnavailable without the package or daemon
        import docker

        check_port_free(spec.host, spec.port)
        for old in self._containers():
            if old.status != "running":
                old.remove(force=True)
        kwargs = self.run_kwargs(spec, run_id, caps, image)
        try:
            container = self.client().containers.run(**kwargs)
        except docker.errors.APIError as e:
            raise DockerUnavailable(f"the daemon refused the engine container: {e.explanation or e}") from None
        make_private_dir(self.state_file.parent)
        write_json_atomic(
            self.state_file,
            {
                "run_id": run_id,
                "container_id": container.id,
                "spec": spec.to_json(),
                "image": image,
                "started_at": time.time(),
                "engine_version": caps.version,
                "engine_build": caps.build,
            },
            secret=True,  # the spec holds the engine's API key
        )
        return self.status()

    def _containers(self) -> list[Any]:
        found = self.client().containers.list(all=True, filters={"label": f"{LABEL}=1"})
        return sorted(found, key=lambda c: c.attrs.get("Created", ""), reverse=True)

    def _state(self) -> dict[str, Any]:
        """docker.json; a damaged one is moved aside (the container, found by its labels, still
        tells the state: its public spec is on a label)."""
        try:
            data = read_state(self.state_file, dict) or {}
        except StateFileError as e:
            log.warning("%s", e)
            os.replace(self.state_file, self.state_file.with_name(self.state_file.name + ".bad"))
            return {}
        if data.get("spec") is not None and not isinstance(data.get("spec"), dict):
            return {}
        return data

    def status(self) -> EngineStatus:
        state = self._state()
        try:
            containers = self._containers()
        except DockerUnavailable as e:
            if state and not state.get("stopped_at"):
                spec = EngineSpec.from_json(state["spec"])
                return EngineStatus(
                    EngineState.UNHEALTHY,
                    backend=self.name,
                    spec=spec,
                    run_id=state.get("run_id"),
                    container_id=state.get("container_id"),
                    reason=str(e),
                )
            raise
        if not containers:
            if state and not state.get("stopped_at"):
                spec = EngineSpec.from_json(state["spec"])
                return EngineStatus(
                    EngineState.FAILED,
                    backend=self.name,
                    spec=spec,
                    run_id=state.get("run_id"),
                    reason="the engine container was removed outside the panel",
                )
            return EngineStatus(EngineState.STOPPED, backend=self.name)
        return self._status_of(containers[0], state)

    def _status_of(self, c: Any, state: dict[str, Any]) -> EngineStatus:
        """The I/O around docker_status.status_from_attrs: the probe, the log, arming the restart."""
        view = ContainerView.from_attrs(c.attrs, fallback_status=c.status)
        rule = RestartRule(self.settings.restart_policy, self.settings.restart_max)
        running = view.status == "running"
        spec = spec_of(view, state)
        probe_result = probe(spec, loaded=False) if running else None
        if probe_result is not None and probe_result.ready:
            recent = ""  # READY: no need to read the log on every poll
        else:
            recent = "\n".join(self.logs(80 if running else 30)) if view.status != "created" else ""
        loaded = any(m in recent for m in flavors.get(spec.flavor).ready_markers)
        tail = tuple(line.split(" ", 1)[-1] for line in recent.splitlines()[-30:]) if not running else ()
        status = status_from_attrs(view, state, probe=probe_result, loaded=loaded, rule=rule, log_tail=tail)
        if should_arm_restart(view, status, rule):
            self._arm_restart(c)
        return status

    def stop(self, timeout_s: float) -> EngineStatus:
        containers = self._containers()
        state = self._state()
        if not containers and (not state or state.get("stopped_at")):
            raise EngineNotRunning("no engine container is running (nothing to stop)")
        for c in containers:
            try:
                c.stop(timeout=int(max(1, timeout_s)))
            except Exception:  # noqa: BLE001 - already gone
                pass
            c.remove(force=True)
        if state:
            state["stopped_at"] = time.time()
            write_json_atomic(self.state_file, state, secret=True)
        return EngineStatus(EngineState.STOPPED, backend=self.name)

    def logs(self, tail: int = 200) -> list[str]:
        """Lines as '<unix time> <text>', the same shape the supervisor writes."""
        try:
            containers = self._containers()
        except DockerUnavailable:
            return []
        if not containers:
            return []
        raw = containers[0].logs(tail=tail, timestamps=True, stdout=True, stderr=True)
        out = []
        for line in raw.decode("utf-8", "replace").splitlines():
            stamp, _, text = line.partition(" ")
            try:
                out.append(f"{docker_time(stamp):.6f} {_clean(text)}")
            except ValueError:
                out.append(f"0 {line}")
        return out

    def engine_pid(self) -> int | None:
        try:
            st = self.status()
        except DockerUnavailable:
            return None
        return st.pid if st.state.is_running else None


def _clean(text: str) -> str:
    from zoe_panel.engine.supervisor import ANSI_RE

    return ANSI_RE.sub("", text.rstrip("\r"))


def _short(e: BaseException) -> str:
    text = str(e)
    return text if len(text) < 200 else text[:200] + "…"
