"""Observability test app.

    /rid           the request id the app sees (HTTP_X_REQUEST_ID)
    /log?m=TEXT    logging.warning(TEXT) through an app logger
    /exc           logging.exception with a traceback
    /errors?m=TEXT TEXT written to wsgi.errors in two pieces
    /print?m=TEXT  print(TEXT) to stdout and to stderr
    /slow?s=N      sleep N seconds in stuck_here()
    /echo          the request body's length
    anything else  "ok"
"""
import logging
import sys
import time
from urllib.parse import parse_qs

log = logging.getLogger("obs_app")


def stuck_here(seconds):
    time.sleep(seconds)


def app(environ, start_response):
    path = environ["PATH_INFO"]
    qs = parse_qs(environ.get("QUERY_STRING", ""))
    m = qs.get("m", [""])[0]
    body = b"ok"
    if path == "/rid":
        body = environ.get("HTTP_X_REQUEST_ID", "<none>").encode()
    elif path == "/log":
        log.warning("app says %s", m)
    elif path == "/exc":
        try:
            1 / 0
        except ZeroDivisionError:
            log.exception("failed on purpose %s", m)
    elif path == "/errors":
        environ["wsgi.errors"].write("errors-" + m[:3])
        environ["wsgi.errors"].write(m[3:] + "\n")
    elif path == "/print":
        print("stdout-" + m)
        print("stderr-" + m, file=sys.stderr)
    elif path == "/slow":
        stuck_here(float(qs.get("s", ["1"])[0]))
    elif path == "/echo":
        n = int(environ.get("CONTENT_LENGTH") or 0)
        body = str(len(environ["wsgi.input"].read(n))).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
