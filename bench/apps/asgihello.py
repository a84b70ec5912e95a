"""ASGI 3 hello world: the smallest possible app, so the server's cost dominates.

The ASGI twin of hello.py: `Hello, World!` as text/plain with a
Content-Length, for every path. It speaks the lifespan protocol too (a
no-op startup and shutdown), so servers running with lifespan "auto" or
"on" see a well-behaved app rather than one that raises on the scope.
"""

BODY = b"Hello, World!"
HEADERS = [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())]


async def app(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": BODY})
    elif scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
