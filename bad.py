async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        m = await receive()
        await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
        return
