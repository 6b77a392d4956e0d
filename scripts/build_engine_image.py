"""Build a small engine image from the native llama-server: a rootfs holding the binary (with
rpc-server and, for a runtime-dispatch build, its CPU libraries) and the shared libraries ldd
lists, imported with the Docker SDK (``docker import``). About 20 MB.

    python scripts/build_engine_image.py BINARY TAG [--smoke-model GGUF] [--env K=V] [--label k=v]

With --smoke-model the image is trusted only after a container of it has decoded tokens on this
machine (the same smoke run as the native build); otherwise the image is removed and the script
fails. No registry is needed, so tests and offline boards can make their own engine image.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoe_panel.build.smoke import SmokeResult, decode, free_port, wait_health


def shared_libs(binary: Path) -> list[Path]:
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout
    libs = []
    for line in out.splitlines():
        parts = line.split()
        if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
            libs.append(Path(parts[2]))
        elif parts and parts[0].startswith("/"):
            libs.append(Path(parts[0]))  # the dynamic loader
    return libs


def rootfs_tar(binary: Path) -> bytes:
    """/usr/local/bin gets the build folder's programs and libraries (a runtime-dispatch build
    finds its CPU variants beside the binary); the rest of ldd's list keeps its host path."""
    folder = binary.resolve().parent
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("tmp", "usr/local/bin"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add(str(binary), arcname="usr/local/bin/llama-server")
        for extra in ("rpc-server",):
            if (folder / extra).is_file():
                tar.add(str(folder / extra), arcname=f"usr/local/bin/{extra}")
        own = sorted(folder.glob("*.so*"))
        for lib in own:
            tar.add(str(lib.resolve()), arcname=f"usr/local/bin/{lib.name}")
        names = {lib.name for lib in own}
        seen: set[str] = set()
        for lib in [*shared_libs(binary), *[x for o in own for x in shared_libs(o)]]:
            if lib.name in names or str(lib) in seen:
                continue
            seen.add(str(lib))
            tar.add(str(lib.resolve()), arcname=str(lib).lstrip("/"))
    return buf.getvalue()


def smoke_image(client: object, tag: str, model: Path, timeout_s: float = 180.0) -> SmokeResult:
    """Run the image's llama-server on the model (host network, model folder read-only) and decode."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = ["llama-server", "-m", f"/models/{model.name}", "-c", "512", "-np", "1"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "-ngl", "0"]
    container = client.containers.run(  # type: ignore[attr-defined]
        tag,
        command=argv,
        detach=True,
        network_mode="host",
        volumes={str(model.resolve().parent): {"bind": "/models", "mode": "ro"}},
        labels={"zoe-panel.smoke": "1"},
    )
    try:

        def alive() -> bool:
            container.reload()
            return container.status in ("created", "running")

        why = wait_health(base, alive, timeout_s)
        tokens, speed = (0, 0.0) if why else decode(base, 16)
        container.reload()
        code = container.attrs.get("State", {}).get("ExitCode") if container.status == "exited" else None
        if why or tokens < 8:
            logs = container.logs(tail=4).decode("utf-8", "replace").replace("\n", " | ")
            return SmokeResult(False, tokens, exit_code=code, detail=f"{why or 'too few tokens'}; {logs}")
        return SmokeResult(True, tokens, speed, detail="ok")
    finally:
        container.remove(force=True)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("binary", type=Path)
    p.add_argument("tag")
    p.add_argument("--smoke-model", type=Path, help="decode this model in a container before trusting the image")
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--label", action="append", default=[])
    args = p.parse_args()
    import docker

    client = docker.from_env(timeout=120)
    repo, _, tag = args.tag.rpartition(":")
    changes = ["ENV PATH=/usr/local/bin:/usr/bin:/bin"] + [f"ENV {e}" for e in args.env]
    st = args.binary.resolve().stat()
    changes += [f"LABEL zoe-panel.binary={args.binary.resolve()}:{st.st_size}:{st.st_mtime_ns}"]
    changes += [f"LABEL {lab}" for lab in args.label]
    client.api.import_image_from_data(rootfs_tar(args.binary), repository=repo, tag=tag, changes=changes)
    img = client.images.get(args.tag)
    print(f"{args.tag} {img.short_id} {img.attrs['Size'] / 1e6:.1f} MB")
    if args.smoke_model:
        t0 = time.monotonic()
        result = smoke_image(client, args.tag, args.smoke_model)
        if not result.ok:
            client.images.remove(args.tag, force=True)
            print(f"error: the image's llama-server does not decode here: {result.detail}", file=sys.stderr)
            return 1
        print(
            f"smoke run in a container: {result.tokens} tokens at {result.tokens_per_s:.1f} tok/s "
            f"({time.monotonic() - t0:.1f} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
