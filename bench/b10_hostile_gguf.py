"""Benchmark 10: hostile GGUF headers. Time and peak memory to accept or refuse each file, the
panel's bounded reader (a child process with limits) against main's path in the same run: gguf-py's
GGUFReader, then a per-layer list sized by the largest block number in the tensor names. The
baseline runs in a child capped at BASELINE_CAP_GIB of address space and BASELINE_TIMEOUT_S."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from common import ROOT, Table

sys.path.insert(0, str(ROOT / "tests"))
from gguf_bytes import STRING, gguf, kv_array, kv_str, s, small_model, tensor

BASELINE_TIMEOUT_S = 30.0
BASELINE_CAP_GIB = 4
BASELINE = r"""
import re, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[2]) << 30,) * 2)
from gguf import GGUFReader
r = GGUFReader(sys.argv[1], "r")
n = 0
for t in r.tensors:
    m = re.match(r"^blk\.(\d+)\.", t.name)
    if m:
        n = max(n, int(m.group(1)) + 1)
per_layer = [0] * n
print("read", len(r.fields), len(r.tensors))
"""


PANEL = r"""
import sys
from pathlib import Path
from zoe_panel.errors import InvalidModelError
from zoe_panel.models.gguf_meta import read_gguf
try:
    info = read_gguf(Path(sys.argv[1]))
    print(f"accepted: {info.tensor_count} tensors")
except InvalidModelError as e:
    print("refused: " + str(e).split(": ", 1)[-1])
"""


def cases(smoke: bool) -> dict[str, bytes]:
    count = 200_000 if smoke else 2_000_000
    out = {
        "tensor blk.100000000.w (192-byte class)": small_model(tensors=[tensor("blk.100000000.w")]),
        "tensor blk.1000000000000000.w": small_model(tensors=[tensor("blk.1000000000000000.w")]),
        "array of 2^62 elements (124-byte class)": gguf([kv_array("tokenizer.ggml.scores", 6, 1 << 62)], []),
        f"string array of {count:,} strings ({count * 9 / 1e6:.0f} MB)": gguf(
            [kv_str("general.architecture", "llama"), kv_array("tokenizer.ggml.merges", STRING, count, s("a") * count)],
            [],
        ),
        "a sane 3-layer header": small_model(blocks=3),
    }
    return out


def watch(cmd: list[str], timeout_s: float) -> tuple[float, float, str]:
    """(seconds, peak RSS MiB, outcome) of a child process, polled every 20 ms."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            family = [ps, *ps.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in family if p.is_running()))
        except psutil.Error:
            pass
        if time.monotonic() - t0 > timeout_s:
            proc.kill()
            proc.wait()
            return timeout_s, peak / 2**20, f"killed at {timeout_s:.0f} s"
        time.sleep(0.02)
    out, err = proc.communicate()
    took = time.monotonic() - t0
    if proc.returncode != 0:
        last = (err.strip().splitlines() or ["?"])[-1]
        return took, peak / 2**20, f"crashed: {last[:60]}"
    return took, peak / 2**20, out.strip().splitlines()[-1][:60] if out.strip() else "ok"


def main(smoke: bool = False) -> Table:
    t = Table(
        "10. Hostile GGUF headers: accept or refuse (time, child peak RSS)",
        ["file", "size", "main's path: s", "peak MiB", "outcome", "panel: s", "peak MiB", "outcome", "time ratio"],
    )
    with tempfile.TemporaryDirectory() as d:
        for name, data in cases(smoke).items():
            path = Path(d) / "x.gguf"
            path.write_bytes(data)
            b_s, b_mb, b_out = watch(
                [sys.executable, "-c", BASELINE, str(path), str(BASELINE_CAP_GIB)], BASELINE_TIMEOUT_S
            )
            o_s, o_mb, o_out = watch([sys.executable, "-c", PANEL, str(path)], 15.0)
            t.add(name, f"{len(data):,} B", b_s, round(b_mb), b_out, o_s, round(o_mb), o_out, round(o_s / b_s, 3))
    t.notes.append(
        f"main's path is capped here at {BASELINE_CAP_GIB} GiB of address space and {BASELINE_TIMEOUT_S:.0f} s "
        "(the probe saw 5.6 GB and 70 s for the 2^62 array, 830 MB for blk.100000000). The panel reads "
        "every header in such a child, limited to +96 MiB of address space and 10 s; the peak RSS "
        "counts the parent and its reader child, each a Python interpreter (~20 MiB)."
    )
    return t


if __name__ == "__main__":
    print(main(smoke="--smoke" in sys.argv).markdown())
