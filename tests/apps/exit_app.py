"""/exit kills the worker with os._exit(1) mid-request; anything else
answers the worker pid."""
import os


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/exit":
        os._exit(1)
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
