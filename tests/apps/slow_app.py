"""Sleeps ?s=N seconds (float, default 1), then answers "slept N pid"."""
import os
import time
from urllib.parse import parse_qs


def app(environ, start_response):
    qs = parse_qs(environ.get("QUERY_STRING", ""))
    seconds = qs.get("s", ["1"])[0]
    time.sleep(float(seconds))
    body = ("slept %s %d" % (seconds, os.getpid())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
