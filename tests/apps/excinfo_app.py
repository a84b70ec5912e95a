"""start_response and exc_info (PEP 3333).

  /        start_response("200 OK", [X-First]) then an error before any body:
           start_response("500 ...", [X-Handled], sys.exc_info()) replaces the
           headers; body "handled: ValueError"
  /twice   start_response called twice without exc_info: an error the server
           must turn into a 500 (PEP 3333: "it is a fatal error")
  /ok      "ok <pid>"
"""
import os
import sys


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/twice":
        start_response("200 OK", [("Content-Type", "text/plain")])
        start_response("201 Created", [("Content-Type", "text/plain")])
        return [b"should never reach the client\n"]
    if path == "/ok":
        body = ("ok %d" % os.getpid()).encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-First", "yes")])
    try:
        raise ValueError("excinfo-marker")
    except ValueError:
        start_response("500 Internal Server Error",
                       [("Content-Type", "text/plain"), ("X-Handled", "yes")],
                       sys.exc_info())
        return [b"handled: ValueError"]
