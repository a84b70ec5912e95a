"""For the slow-client tests.

Every call prints "CALLED <method> <path>" to stderr, so a test can prove
the app was never reached.

- POST /hash: reads wsgi.input in 64 KiB chunks, answers "<len> <sha256>".
- GET /big?size=N: streams N bytes (byte k is k % 251) from a generator.
- GET /sse: 50 events of 60 KB each, X-Accel-Buffering: no.
- GET /sleep?s=N: sleeps N seconds, then like anything else.
- anything else: "ok <pid>".
"""
import hashlib
import os
import sys
from urllib.parse import parse_qs


def app(environ, start_response):
    method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
    print("CALLED %s %s" % (method, path), file=sys.stderr, flush=True)
    if path == "/hash":
        h, n = hashlib.sha256(), 0
        inp = environ["wsgi.input"]
        while True:
            chunk = inp.read(65536)
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
        body = ("%d %s" % (n, h.hexdigest())).encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    if path == "/big":
        size = int(parse_qs(environ["QUERY_STRING"])["size"][0])
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(size))])

        def gen():
            pattern = bytes(k % 251 for k in range(251 * 261))  # 65511 bytes, period 251
            sent = 0
            while sent < size:
                part = pattern[: min(len(pattern), size - sent)]
                yield part
                sent += len(part)
        return gen()
    if path == "/sse":
        start_response("200 OK", [("Content-Type", "text/event-stream"),
                                  ("X-Accel-Buffering", "no")])
        return (b"data: %d\n\n" % i + b"x" * 60000 for i in range(50))
    if path == "/sleep":
        import time
        time.sleep(float(parse_qs(environ["QUERY_STRING"])["s"][0]))
    body = ("ok %d" % os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
