"""ASGI apps whose lifespan startup fails (tests/asgi.rs).

  failed_app        answers lifespan.startup.failed with a message naming
                    the failure ("database unreachable: FAILSTARTUP-7Q")
  raising_app       raises RuntimeError("FAILSTARTUP-RAISE-7Q") on the
                    lifespan scope (with lifespan = "on" the server must
                    give up; with "auto" it is "lifespan unsupported")
Both answer HTTP requests with 200 "served" if they ever get any.
"""


async def _served(send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", b"6")]})
    await send({"type": "http.response.body", "body": b"served"})


async def failed_app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.failed",
                            "message": "database unreachable: FAILSTARTUP-7Q"})
                return
            if msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "http":
        await _served(send)


async def raising_app(scope, receive, send):
    if scope["type"] == "lifespan":
        raise RuntimeError("FAILSTARTUP-RAISE-7Q")
    if scope["type"] == "http":
        await _served(send)
