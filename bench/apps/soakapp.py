"""The soak scenario's WSGI app (bench/soakgen.py drives it):

    GET  /             Hello, World!
    GET  /stream?n=N   N chunks of 4 KiB from a generator, no Content-Length
                       (the front sends it chunked)
    POST /upload       reads the whole body, answers its length and CRC-32
"""

import zlib

HELLO = b"Hello, World!"
CHUNK = b"x" * 4096


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/":
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(HELLO)))])
        return [HELLO]
    if path == "/stream":
        try:
            n = int(environ.get("QUERY_STRING", "").partition("n=")[2] or "16")
        except ValueError:
            n = 16
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (CHUNK for _ in range(n))
    if path == "/upload" and environ["REQUEST_METHOD"] == "POST":
        inp = environ["wsgi.input"]
        size, crc = 0, 0
        while True:
            block = inp.read(65536)
            if not block:
                break
            size += len(block)
            crc = zlib.crc32(block, crc)
        body = f"{size} {crc}".encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    start_response("404 Not Found", [("Content-Length", "0")])
    return [b""]
