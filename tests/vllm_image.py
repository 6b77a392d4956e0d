"""A CPU vLLM image for the Docker backend's tests, made here (no registry is reachable): the
panel's vLLM venv, the Python it was made from and the system libraries, imported as a rootfs
(``docker import``). It stands in for the Jetson's vLLM image: the panel runs it the same way
(``python3 -m vllm.entrypoints.openai.api_server`` on a folder under /models, its key and KV
space in the environment). About 4.5 GB; built once per Docker data root, and kept."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

TAG = "zoe-panel/vllm-cpu:local"


def base_python(venv: Path) -> Path:
    """The interpreter installation the venv was made from (pyvenv.cfg's home, one level up)."""
    for line in (venv / "pyvenv.cfg").read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "home":
            return Path(value.strip()).parent
    raise RuntimeError(f"{venv}/pyvenv.cfg names no home")


def build(docker_host: str, venv: Path, tag: str = TAG) -> str:
    """Import the image unless the daemon has it; return its tag."""
    import docker

    client = docker.DockerClient(base_url=docker_host, timeout=600)
    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    venv = venv.resolve()
    base = base_python(venv)
    ver = next(p.name for p in (venv / "lib").glob("python3*"))  # the venv's own lib/pythonX.Y
    with tempfile.TemporaryDirectory() as tmp:
        top = Path(tmp)
        for link, to in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")):
            (top / link).symlink_to(to)
        (top / "usr/local/bin").mkdir(parents=True)
        (top / "tmp").mkdir(mode=0o1777)
        (top / "tmp").chmod(0o1777)
        (top / "etc").mkdir()
        (top / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        (top / "etc/group").write_text("root:x:0:\n")
        (top / "etc/hosts").write_text("127.0.0.1 localhost\n")
        host = [
            "usr/lib/x86_64-linux-gnu",
            "usr/lib64",
            "usr/bin/sh",
            "usr/bin/dash",
            "usr/bin/lscpu",
            "usr/bin/env",
            "usr/bin/uname",
        ]
        py = [str(p.relative_to("/")) for p in (base / "bin").glob("python3*")]
        py += [str(p.relative_to("/")) for p in (base / "lib").glob("libpython3*")]
        py.append(str((base / "lib" / ver).relative_to("/")))
        listing = top / "list"
        listing.write_text("\n".join([*host, *py, str(venv.relative_to("/"))]) + "\n")
        # one archive: the host's files (relative to /), then the small tree made above
        pipeline = (
            f"tar -C / -cf - --exclude={base.relative_to('/')}/lib/{ver}/site-packages "
            f"--exclude={base.relative_to('/')}/lib/{ver}/test "
            f"-T {listing} -C {top} bin lib lib64 usr/local etc tmp "
            # python3 is the venv's, found first on PATH (a symlink elsewhere would not see its pyvenv.cfg)
            f"| docker -H {docker_host} import --change 'ENV PATH={venv}/bin:/usr/local/bin:/usr/bin:/bin' - {tag}"
        )
        done = subprocess.run(["bash", "-o", "pipefail", "-c", pipeline], capture_output=True, text=True,
                              env={**os.environ, "DOCKER_HOST": docker_host}, timeout=1800)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"docker import failed: {done.stderr[-1500:]}")
    return tag
