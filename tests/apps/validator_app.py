"""An app wrapped in wsgiref.validate.validator: any PEP 3333 violation by
the server raises AssertionError (and WSGIWarning is turned into an error),
which the server turns into a 500 and a traceback on stderr.

?mode= selects how the body is read from wsgi.input:
  read       read(CONTENT_LENGTH), or read(8192) until b"" when there is none
  readsize   read(7) repeatedly until b""
  readline   readline() until b""
  readline_n readline(5) until b""
  readlines  readlines()
  iter       for line in wsgi.input
(default: body not read)
The response is "<mode> <len> <sha256>\n". HEAD gets the same headers.
"""
import hashlib
import warnings
from urllib.parse import parse_qs
from wsgiref.validate import validator, WSGIWarning

warnings.simplefilter("error", WSGIWarning)


def read_body(environ, mode):
    stream = environ["wsgi.input"]
    if mode == "read":
        length = environ.get("CONTENT_LENGTH", "")
        if length:
            return stream.read(int(length))
        data = b""
        while True:
            chunk = stream.read(8192)
            if not chunk:
                return data
            data += chunk
    if mode == "readsize":
        data = b""
        while True:
            chunk = stream.read(7)
            if not chunk:
                return data
            assert len(chunk) <= 7, "read(7) returned %d bytes" % len(chunk)
            data += chunk
    if mode in ("readline", "readline_n"):
        data = b""
        while True:
            line = stream.readline(5) if mode == "readline_n" else stream.readline()
            if not line:
                return data
            if mode == "readline_n":
                assert len(line) <= 5, "readline(5) returned %d bytes" % len(line)
            else:
                assert line.endswith(b"\n") or b"\n" not in line, line
                assert line.count(b"\n") <= 1, line
            data += line
    if mode == "readlines":
        lines = stream.readlines()
        for line in lines[:-1]:
            assert line.endswith(b"\n"), lines
        return b"".join(lines)
    if mode == "iter":
        data = b""
        for line in stream:
            assert line.count(b"\n") <= 1, line
            data += line
        return data
    return b""


def inner(environ, start_response):
    method = environ["REQUEST_METHOD"]
    if method not in ("GET", "POST", "HEAD"):
        start_response("405 Method Not Allowed", [("Content-Type", "text/plain"),
                                                  ("Allow", "GET, POST, HEAD")])
        return [b"method not allowed\n"]
    mode = parse_qs(environ.get("QUERY_STRING", "")).get("mode", ["none"])[0]
    data = read_body(environ, mode)
    environ["wsgi.errors"].write("")
    environ["wsgi.errors"].writelines([])
    environ["wsgi.errors"].flush()
    body = ("%s %d %s\n" % (mode, len(data), hashlib.sha256(data).hexdigest())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


app = validator(inner)
