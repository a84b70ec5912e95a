"""App for the static-file and offload tests (tests/static_*.rs).

EDGE_TEST_FILES names the folder the file-serving views read from.

    /                      "app root"
    /pid                   the worker's pid
    /io                    the worker's /proc/self/io rchar
    /accel?name=N          X-Accel-Redirect: /protected/N (+ headers nginx keeps)
    /accel-raw?to=URI      X-Accel-Redirect: URI as given
    /sendfile?name=N       X-Sendfile: $EDGE_TEST_FILES/N
    /sendfile-raw?to=PATH  X-Sendfile: PATH as given
    /wrapper?name=N[&skip=K][&len=L]
                           wsgi.file_wrapper over open(N) (after reading K
                           bytes; Content-Length L when given)
    /wrapper-bytes         wsgi.file_wrapper over a BytesIO (no fileno)
    /wrapper-write         write() first, then a file_wrapper
    /html?n=N              N repeated lines of HTML (compressible)
    /stream?n=N            the same, as a generator of N chunks
    /png?n=N               N bytes as image/png (not compressible)
    /encoded               an already gzip-encoded body
    anything else          404 "app 404: <PATH_INFO>"
"""

import io
import os
from urllib.parse import parse_qs

FILES = os.environ.get("EDGE_TEST_FILES", "")
LINE = b"<p>edge compresses this line of html nicely</p>\n"


def _q(environ):
    return {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _rchar():
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    return -1


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    q = _q(environ)
    if path == "/":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"app root"]
    if path == "/pid":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(os.getpid()).encode()]
    if path == "/io":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(_rchar()).encode()]
    if path == "/accel":
        start_response("200 OK", [
            ("X-Accel-Redirect", "/protected/" + q.get("name", "")),
            ("Content-Type", q.get("type", "application/pdf")),
            ("Content-Disposition", 'attachment; filename="report.pdf"'),
            ("Set-Cookie", "seen=1; Path=/"),
            ("Cache-Control", "private, max-age=60"),
            ("X-Accel-Buffering", "no"),
            ("X-Other", "dropped"),
        ])
        return [b"this body is replaced by the file"]
    if path == "/accel-raw":
        start_response("200 OK", [("X-Accel-Redirect", q.get("to", ""))])
        return [b""]
    if path == "/sendfile":
        start_response("200 OK", [("X-Sendfile", os.path.join(FILES, q.get("name", "")))])
        return [b""]
    if path == "/sendfile-raw":
        start_response("200 OK", [("X-Sendfile", q.get("to", ""))])
        return [b""]
    if path == "/wrapper":
        f = open(os.path.join(FILES, q.get("name", "")), "rb")
        if "skip" in q:
            f.read(int(q["skip"]))
        headers = [("Content-Type", "application/octet-stream")]
        if "len" in q:
            headers.append(("Content-Length", q["len"]))
        start_response("200 OK", headers)
        return environ["wsgi.file_wrapper"](f, 8192)
    if path == "/wrapper-bytes":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"from a BytesIO\n" * 3), 7)
    if path == "/wrapper-write":
        write = start_response("200 OK", [("Content-Type", "application/octet-stream")])
        write(b"HEAD:")
        return environ["wsgi.file_wrapper"](open(os.path.join(FILES, q.get("name", "")), "rb"))
    if path == "/html":
        body = LINE * int(q.get("n", "100"))
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                  ("Content-Length", str(len(body))),
                                  ("ETag", '"v1"')])
        return [body]
    if path == "/stream":
        n = int(q.get("n", "10"))
        start_response("200 OK", [("Content-Type", "application/json")])
        return (LINE for _ in range(n))
    if path == "/png":
        body = os.urandom(int(q.get("n", "4096")))
        start_response("200 OK", [("Content-Type", "image/png")])
        return [body]
    if path == "/encoded":
        import gzip
        body = gzip.compress(LINE * 100)
        start_response("200 OK", [("Content-Type", "text/html"),
                                  ("Content-Encoding", "gzip")])
        return [body]
    body = ("app 404: %s" % path).encode("utf-8", "surrogateescape")
    start_response("404 Not Found", [("Content-Type", "text/plain"),
                                     ("Content-Length", str(len(body)))])
    return [body]
