"""Echo the WSGI environ as JSON, for comparing edge with gunicorn.

Response (application/json):
  environ      every environ entry whose value is a str
  types        type name of every wsgi.* entry (and of every other non-str entry)
  wsgi         the JSON-able wsgi.* values (version, url_scheme, multithread, ...)
  input_api    which file methods wsgi.input has
  errors_api   which file methods wsgi.errors has
  file_wrapper whether wsgi.file_wrapper is callable
  body_len     number of bytes read from wsgi.input (read() until b"")
  body_sha256  hex sha256 of those bytes
  pid          os.getpid() of the worker
  os_environ   os.environ.get(name) for the names in ?env=NAME[,NAME]

?log=TEXT writes TEXT.upper() + newline to wsgi.errors (and flushes), so
the written line differs from the request URI that logs may quote.
"""
import hashlib
import json
import os
from urllib.parse import parse_qs


def app(environ, start_response):
    stream = environ["wsgi.input"]
    data = bytearray()
    while True:
        chunk = stream.read(65536)
        if not chunk:
            break
        data += chunk
    qs = parse_qs(environ.get("QUERY_STRING", ""))
    if "log" in qs:
        environ["wsgi.errors"].write(qs["log"][0].upper() + "\n")
        environ["wsgi.errors"].flush()
    env_names = []
    for v in qs.get("env", []):
        env_names.extend(n for n in v.split(",") if n)
    wsgi = {}
    for key in ("wsgi.version", "wsgi.url_scheme", "wsgi.multithread",
                "wsgi.multiprocess", "wsgi.run_once"):
        if key in environ:
            value = environ[key]
            wsgi[key] = list(value) if isinstance(value, tuple) else value
    out = {
        "environ": {k: v for k, v in environ.items() if isinstance(v, str)},
        "types": {k: type(v).__name__ for k, v in environ.items()
                  if k.startswith("wsgi.") or not isinstance(v, str)},
        "wsgi": wsgi,
        "input_api": sorted(m for m in ("read", "readline", "readlines", "__iter__")
                            if hasattr(stream, m)),
        "errors_api": sorted(m for m in ("write", "writelines", "flush")
                             if hasattr(environ["wsgi.errors"], m)),
        "file_wrapper": callable(environ.get("wsgi.file_wrapper")),
        "body_len": len(data),
        "body_sha256": hashlib.sha256(bytes(data)).hexdigest(),
        "pid": os.getpid(),
        "os_environ": {n: os.environ.get(n) for n in env_names},
    }
    body = json.dumps(out, sort_keys=True).encode("utf-8")
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
