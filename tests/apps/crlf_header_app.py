"""Header injection attempts: /crlf (CRLF in a value), /lf (bare LF in a
value), /name (CRLF in a name), /colon (':' in a name); anything else
answers "ok <pid>"."""
import os

BAD = {
    "/crlf": ("X-Evil", "a\r\nX-Injected: 1"),
    "/lf": ("X-Evil", "a\nX-Injected: 1"),
    "/name": ("X-Evil\r\nX-Injected", "1"),
    "/colon": ("X-Evil: X-Injected", "1"),
}


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path in BAD:
        start_response("200 OK", [("Content-Type", "text/plain"), BAD[path]])
        return [b"should never reach the client\n"]
    body = ("ok %d" % os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
