"""/exit kills the worker with os._exit(1) mid-request; /slow sleeps 1 s
then answers the pid; anything else answers the worker pid."""
import os
import time


def app(environ, start_response):
    path = environ.get("PATH_INFO")
    if path == "/exit":
        os._exit(1)
    if path == "/slow":
        time.sleep(1)
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
