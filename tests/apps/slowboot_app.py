"""Takes a while to import (SLOWBOOT_SECONDS, default 1), then answers its
worker's pid as text: a replacement worker is ready only well after the
request that made its predecessor retire. `app` is WSGI, `asgi_app` ASGI."""
import os
import time

time.sleep(float(os.environ.get("SLOWBOOT_SECONDS", "1")))


def app(environ, start_response):
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


async def asgi_app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = str(os.getpid()).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
