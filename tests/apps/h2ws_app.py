"""A WebSocket echo for the RFC 8441 (WebSocket over HTTP/2) test; it
reports the scope it saw in its first message."""
import json


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            m = await receive()
            await send({"type": m["type"] + ".complete"})
            if m["type"] == "lifespan.shutdown":
                return
    assert scope["type"] == "websocket"
    m = await receive()
    assert m["type"] == "websocket.connect"
    await send({"type": "websocket.accept", "subprotocol": "echo.v1"})
    await send({"type": "websocket.send", "text": json.dumps({
        "http_version": scope["http_version"], "scheme": scope["scheme"],
        "path": scope["path"], "subprotocols": scope["subprotocols"]})})
    while True:
        m = await receive()
        if m["type"] == "websocket.disconnect":
            return
        if m.get("text") == "bye":
            await send({"type": "websocket.close", "code": 4002, "reason": "done"})
            return
        await send({"type": "websocket.send", "text": m.get("text"), "bytes": m.get("bytes")})
