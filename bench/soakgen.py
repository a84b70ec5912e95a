#!/usr/bin/env python3
"""The soak scenario's load generator (bench/run --only soak): N requests
over C concurrent clients, asyncio and raw sockets, standard library only.

Request i's kind is fixed by i % 20, so every run sends the same mix:

    0-7   GET /                         keep-alive connection
    8-9   GET / + Connection: close     a new connection each
    10    POST /upload 4 KiB            keep-alive, buffered in memory
    11    POST /upload 256 KiB          keep-alive, above body_buffer: spooled
    12-13 GET /static/1k.bin            keep-alive
    14    GET /static/64k.bin           keep-alive
    15    GET /stream?n=32 (128 KiB)    keep-alive, chunked from a generator
    16    GET /stream?n=4               keep-alive
    17    abort: POST /upload announcing 256 KiB, 96 KiB sent, then close
    18    abort: GET /static/4m.bin, 16 KiB read, then close
    19    abort: GET /stream?n=256 (1 MiB), 8 KiB read, then close

Every answer is checked (status 200, body length, the upload's CRC-32).
Prints progress on stderr and one `BENCHJSON {...}` line on stdout: counts per kind,
errors (the first few quoted), elapsed seconds.

    soakgen.py --port P --requests N [--conns C] [--max-seconds S]
"""

import argparse
import asyncio
import json
import sys
import time
import zlib

HELLO = b"Hello, World!"
SMALL = bytes(range(256)) * 16            # 4 KiB
LARGE = bytes(range(256)) * 1024          # 256 KiB
KINDS = (["keepalive"] * 8 + ["new-conn"] * 2 + ["upload-4k", "upload-256k"]
         + ["static-1k"] * 2 + ["static-64k", "stream-128k", "stream-16k",
                                "abort-upload", "abort-static", "abort-stream"])
TIMEOUT = 30.0


class Bad(Exception):
    pass


async def read_response(r):
    head = await r.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            hdrs[k.strip().lower()] = v.strip()
    if "content-length" in hdrs:
        body = await r.readexactly(int(hdrs["content-length"]))
    elif hdrs.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int((await r.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while (await r.readuntil(b"\r\n")) != b"\r\n":
                    pass
                break
            parts.append(await r.readexactly(size))
            await r.readexactly(2)
        body = b"".join(parts)
    else:
        body = await r.read()
    close = hdrs.get("connection", "").lower() == "close"
    return status, body, close


def request(method, path, port, body=b"", close=False, length=None):
    h = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    if method == "POST":
        h.append(f"Content-Length: {len(body) if length is None else length}")
        h.append("Content-Type: application/octet-stream")
    if close:
        h.append("Connection: close")
    return ("\r\n".join(h) + "\r\n\r\n").encode() + body


def expect(kind, status, body):
    if status != 200:
        raise Bad(f"{kind}: status {status}")
    want = {"keepalive": HELLO, "new-conn": HELLO,
            "upload-4k": f"{len(SMALL)} {zlib.crc32(SMALL)}".encode(),
            "upload-256k": f"{len(LARGE)} {zlib.crc32(LARGE)}".encode()}.get(kind)
    if want is not None and body != want:
        raise Bad(f"{kind}: body {body[:40]!r}")
    size = {"static-1k": 1024, "static-64k": 65536,
            "stream-128k": 32 * 4096, "stream-16k": 4 * 4096}.get(kind)
    if size is not None and len(body) != size:
        raise Bad(f"{kind}: {len(body)} bytes, expected {size}")


class Client:
    def __init__(self, port):
        self.port = port
        self.conn = None
        self.opened = 0

    async def keepalive(self):
        if self.conn is None:
            self.conn = await asyncio.open_connection("127.0.0.1", self.port)
            self.opened += 1
        return self.conn

    def drop(self):
        if self.conn:
            self.conn[1].close()
            self.conn = None

    async def one(self, kind):
        port = self.port
        if kind.startswith("abort-") or kind == "new-conn":
            r, w = await asyncio.open_connection("127.0.0.1", port)
            self.opened += 1
            try:
                if kind == "new-conn":
                    w.write(request("GET", "/", port, close=True))
                    expect(kind, *(await read_response(r))[:2])
                elif kind == "abort-upload":
                    w.write(request("POST", "/upload", port, LARGE[:96 * 1024],
                                    length=len(LARGE)))
                    await w.drain()
                    await asyncio.sleep(0.01)  # let the front spool some of it
                else:
                    path = "/static/4m.bin" if kind == "abort-static" else "/stream?n=256"
                    w.write(request("GET", path, port))
                    await r.readuntil(b"\r\n\r\n")
                    await r.readexactly(16384 if kind == "abort-static" else 8192)
            finally:
                w.transport.abort() if kind.startswith("abort-") else w.close()
            return
        r, w = await self.keepalive()
        try:
            if kind == "keepalive":
                w.write(request("GET", "/", port))
            elif kind.startswith("upload-"):
                w.write(request("POST", "/upload", port,
                                SMALL if kind == "upload-4k" else LARGE))
            elif kind.startswith("static-"):
                w.write(request("GET", f"/static/{kind[7:]}.bin", port))
            else:
                n = 32 if kind == "stream-128k" else 4
                w.write(request("GET", f"/stream?n={n}", port))
            status, body, close = await read_response(r)
            expect(kind, status, body)
            if close:
                self.drop()
        except BaseException:
            self.drop()
            raise


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--requests", type=int, required=True)
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--max-seconds", type=float, default=3600)
    ap.add_argument("--progress", type=float, default=5.0, help="seconds between progress lines")
    a = ap.parse_args()

    counts = {k: 0 for k in dict.fromkeys(KINDS)}
    errors = []
    nerr = 0
    nxt = 0
    done = 0
    t0 = time.monotonic()
    deadline = t0 + a.max_seconds
    clients = [Client(a.port) for _ in range(a.conns)]

    async def worker(c):
        nonlocal nxt, done, nerr
        while nxt < a.requests and time.monotonic() < deadline:
            i = nxt
            nxt += 1
            kind = KINDS[i % len(KINDS)]
            try:
                await asyncio.wait_for(c.one(kind), TIMEOUT)
                counts[kind] += 1
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    asyncio.TimeoutError, ValueError, IndexError, Bad) as e:
                nerr += 1
                if len(errors) < 10:
                    errors.append(f"request {i} ({kind}): {e.__class__.__name__}: {e}")
            done += 1
        c.drop()

    async def progress():
        while True:
            await asyncio.sleep(a.progress)
            el = time.monotonic() - t0
            print(f"soakgen: {done}/{a.requests} in {el:.0f}s ({done / el:.0f}/s), "
                  f"{nerr} errors", file=sys.stderr, flush=True)

    prog = asyncio.ensure_future(progress())
    await asyncio.gather(*(worker(c) for c in clients))
    prog.cancel()
    el = time.monotonic() - t0
    print("BENCHJSON " + json.dumps({"requests": done, "answered": sum(counts.values()),
                      "counts": counts, "errors": nerr, "first_errors": errors,
                      "connections_opened": sum(c.opened for c in clients),
                      "elapsed_s": el, "unsent": a.requests - done}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
