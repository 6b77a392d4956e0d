"""Build a small engine image from the native llama-server: a rootfs holding the binary and the
shared libraries ldd lists, imported with the Docker SDK (``docker import``). About 20 MB.

    python scripts/build_engine_image.py BINARY TAG [--env CUDA_VERSION=12.6] [--label k=v]

No registry is needed, so tests and offline boards can make their own engine image.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tarfile
from pathlib import Path


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
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("tmp", "usr/local/bin"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add(str(binary), arcname="usr/local/bin/llama-server")
        for lib in shared_libs(binary):
            tar.add(str(lib.resolve()), arcname=str(lib).lstrip("/"))
    return buf.getvalue()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("binary", type=Path)
    p.add_argument("tag")
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--label", action="append", default=[])
    args = p.parse_args()
    import docker

    client = docker.from_env(timeout=120)
    repo, _, tag = args.tag.rpartition(":")
    changes = ["ENV PATH=/usr/local/bin:/usr/bin:/bin"] + [f"ENV {e}" for e in args.env]
    changes += [f"LABEL {lab}" for lab in args.label]
    client.api.import_image_from_data(rootfs_tar(args.binary), repository=repo, tag=tag, changes=changes)
    img = client.images.get(args.tag)
    print(f"{args.tag} {img.short_id} {img.attrs['Size'] / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
