"""Sleeps ?s=N seconds (float, default 1), then answers "slept N pid".

?gil=1 first holds the GIL for minutes: a regular expression that
backtracks inside the regex engine, which never lets another thread run.
"""
import os
import re
import time
from urllib.parse import parse_qs


def app(environ, start_response):
    qs = parse_qs(environ.get("QUERY_STRING", ""))
    if "gil" in qs:
        re.match(r"(a+)+$", "a" * 34 + "b")
    seconds = qs.get("s", ["1"])[0]
    time.sleep(float(seconds))
    body = ("slept %s %d" % (seconds, os.getpid())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
