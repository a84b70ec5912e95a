"""Reports how its request body arrived: the size of every http.request
message, and whether the body ended or the client went away."""
import json


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    sizes = []
    ended = "disconnect"
    while True:
        m = await receive()
        if m["type"] == "http.disconnect":
            break
        sizes.append(len(m.get("body", b"")))
        if not m.get("more_body", False):
            ended = "end"
            break
    body = json.dumps({"sizes": sizes, "ended": ended}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
