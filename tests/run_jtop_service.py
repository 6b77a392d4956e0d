"""Run the real jetson-stats service (JtopServer) over the simulated Jetson.

Started by tests inside ``unshare -m`` as root: /sys/devices/virtual becomes a private tmpfs that
holds the DMI identity and thermal zones the service reads; everything else it reads comes from
/fake_sys (JTOP_TESTING=1). The service listens on the real /run/jtop.sock.
"""

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from sim_jetson import build_thermal

virtual = Path("/sys/devices/virtual")
subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(virtual)], check=True)
build_thermal(virtual)
os.environ["JTOP_TESTING"] = "1"

from jtop.service import JtopServer  # noqa: E402

server = JtopServer()
server.start()
print("jtop service started", flush=True)
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: done.set())
done.wait()
server.close()
