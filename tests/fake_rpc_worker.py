"""A stand-in for an rpc-server of another protocol version (an older board's build): it answers
llama.cpp's HELLO with the version it is given and closes. Only the version handshake is faked; the
panel and llama-server around it are real. Run: python tests/fake_rpc_worker.py PORT MAJOR.MINOR.PATCH"""

from __future__ import annotations

import socket
import struct
import sys
import threading


def serve(port: int, version: tuple[int, int, int], stop: threading.Event | None = None) -> socket.socket:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(4)

    def handle(conn: socket.socket) -> None:
        with conn:
            try:
                head = conn.recv(9)
                if len(head) == 9:
                    _cmd, size = struct.unpack("<BQ", head)
                    while size:
                        size -= len(conn.recv(min(size, 4096)) or b"x" * size)
                    conn.sendall(struct.pack("<Q", 28) + bytes(version) + bytes(25))
                    conn.recv(1)
            except OSError:
                pass

    def loop() -> None:
        while not (stop and stop.is_set()):
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    return srv


if __name__ == "__main__":
    v = tuple(int(x) for x in sys.argv[2].split("."))
    serve(int(sys.argv[1]), (v[0], v[1], v[2]))
    threading.Event().wait()
