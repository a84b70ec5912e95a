"""A broken upstream for tests/proxy.rs. Not an app.

    python3 proxy_broken.py PORT

Reads a request head, then by its path:
  .../reset    closes with a TCP reset (SO_LINGER 0), no answer
  .../hang     never answers (the connection stays open)
  .../garbage  answers bytes that are not HTTP, then closes
"""
import socket
import struct
import sys
import threading
import time

held = []


def serve(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        b = conn.recv(65536)
        if not b:
            conn.close()
            return
        data += b
    target = data.split(b" ", 2)[1]
    if b"/reset" in target:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
    elif b"/hang" in target:
        held.append(conn)
    else:
        conn.sendall(b"this is not HTTP at all\r\n\r\n")
        conn.close()


s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(128)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
