"""Tracks close() on returned iterables, per path, in this worker's memory
(run it with one worker).

  /        an iterable of two chunks
  /raise   an iterable that raises after its first chunk (close() is still due)
  /count   JSON {"/": n, "/raise": m, "/count": k, "pid": pid}: close() calls so
           far (this request's own close() happens after it is counted)
"""
import json
import os

CLOSES = {"/": 0, "/raise": 0, "/count": 0}


class Body:
    def __init__(self, path, chunks, fail=False):
        self.path = path
        self.chunks = chunks
        self.fail = fail

    def __iter__(self):
        for i, chunk in enumerate(self.chunks):
            if self.fail and i == 1:
                raise RuntimeError("close_app iteration failure")
            yield chunk

    def close(self):
        CLOSES[self.path] += 1


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/count":
        out = dict(CLOSES)
        out["pid"] = os.getpid()
        body = json.dumps(out, sort_keys=True).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return Body("/count", [body])
    if path == "/raise":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body("/raise", [b"first\n", b"second\n"], fail=True)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return Body("/", [b"one\n", b"two\n"])
