"""Response headers and bodies the server must pass through untouched.

  /cookies      two Set-Cookie headers (never folded into one) and a
                repeated X-Multi header, in order
  /204          204 No Content, no body, no Content-Type
  /file         wsgi.file_wrapper over this file, 1000-byte blocks
  /big?size=N   N bytes (default 8 MiB) of bytes(i % 251), in 64 KiB chunks
                from a generator, no Content-Length
  /             "ok <pid>"
"""
import os
from urllib.parse import parse_qs


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/cookies":
        start_response("200 OK", [
            ("Content-Type", "text/plain"),
            ("Set-Cookie", "a=1; Path=/; HttpOnly"),
            ("X-Multi", "first"),
            ("Set-Cookie", "b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT; Path=/"),
            ("X-Multi", "second"),
        ])
        return [b"cookies"]
    if path == "/204":
        start_response("204 No Content", [("X-Empty", "yes")])
        return []
    if path == "/file":
        f = open(__file__, "rb")
        start_response("200 OK", [("Content-Type", "text/x-python")])
        return environ["wsgi.file_wrapper"](f, 1000)
    if path == "/big":
        qs = parse_qs(environ.get("QUERY_STRING", ""))
        size = int(qs.get("size", [str(8 * 1024 * 1024)])[0])
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        block = bytes(i % 251 for i in range(65536 + 251))

        def body():
            sent = 0
            while sent < size:
                # byte k of the body is k % 251, across chunk boundaries
                n = min(65536, size - sent)
                start = sent % 251
                yield block[start:start + n]
                sent += n

        return body()
    body = ("ok %d" % os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
