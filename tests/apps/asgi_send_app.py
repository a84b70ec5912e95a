"""A raw ASGI 3 app for tests/asgi_send.rs: what an HTTP request's `send`
accepts, refuses and returns. Standard library only.

Routes:
  /protocol        runs the checks below against its own `send`, then
                   answers 200 with a JSON object of their outcomes
                   ("ExcType: message" or a value); the response itself is
                   started through asyncio.create_task(send(...)) and ended
                   through asyncio.ensure_future(send(...))
  /after-done      a whole response, then one more body message: the error
                   is kept for /last
  /last            JSON {"after_done": that error}
  /start-only      http.response.start, then returns (no body)
  /partial         start and one body part with more_body, 0.2 s (the head
                   reaches the client), then returns
  /status?s=V      http.response.start with status V (an int if V is
                   digits, a str if it starts with "s", True for "true")
  /raises-later    start and a first body part, 0.2 s, then raises
  anything else    200 "hello" with content-type and content-length (also
                   for HEAD)
"""
import asyncio
import inspect
import json

LAST = {}


def _outcome(exc):
    return f"{type(exc).__name__}: {exc}"


async def _try(awaitable):
    try:
        return await awaitable
    except Exception as e:  # noqa: BLE001 - the outcome is the answer
        return _outcome(e)


async def protocol(send):
    out = {}
    body_first = send({"type": "http.response.body", "body": b"x"})
    out["is_awaitable"] = inspect.isawaitable(body_first)
    out["is_coroutine"] = asyncio.iscoroutine(body_first)
    out["body_before_start"] = await _try(body_first)
    out["awaited_twice"] = await _try(body_first)
    out["unknown_type"] = await _try(send({"type": "http.response.bogus"}))
    out["no_type"] = await _try(send({"status": 200}))
    out["str_status"] = await _try(send({"type": "http.response.start", "status": "200"}))
    out["bool_status"] = await _try(send({"type": "http.response.start", "status": True}))
    out["status_99"] = await _try(send({"type": "http.response.start", "status": 99}))
    out["no_status"] = await _try(send({"type": "http.response.start"}))
    # Made but never awaited: nothing is sent (the response below is a 200).
    send({"type": "http.response.start", "status": 418, "headers": []})
    # Thrown into before its first step: the exception comes out, the
    # message is not sent, and the object is spent.
    thrown = send({"type": "http.response.start", "status": 409, "headers": []})
    try:
        thrown.throw(ValueError("thrown in"))
        out["throw"] = "nothing raised"
    except ValueError as e:
        out["throw"] = _outcome(e)
    out["after_throw"] = await _try(thrown)
    closed = send({"type": "http.response.start", "status": 410, "headers": []})
    closed.close()
    out["after_close"] = await _try(closed)
    sent = send({"type": "http.response.start", "status": 411, "headers": []})
    try:
        sent.send(1)
        out["send_non_none"] = "nothing raised"
    except TypeError as e:
        out["send_non_none"] = _outcome(e)
    # The real response: started from a task of its own.
    await asyncio.create_task(send({
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"application/json"), (b"x-started-by", b"task")],
    }))
    out["start_twice"] = await _try(send({"type": "http.response.start", "status": 200}))
    await send({"type": "http.response.body", "body": b"", "more_body": True})
    out["pathsend_after_body"] = await _try(
        send({"type": "http.response.pathsend", "path": "/etc/hostname"}))
    body = json.dumps(out).encode()
    await asyncio.ensure_future(send({"type": "http.response.body", "body": body}))


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if path == "/protocol":
        await protocol(send)
    elif path == "/after-done":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})
        LAST["after_done"] = await _try(send({"type": "http.response.body", "body": b"more"}))
    elif path == "/last":
        body = json.dumps(LAST).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
    elif path == "/start-only":
        await send({"type": "http.response.start", "status": 200, "headers": []})
    elif path == "/partial":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first part", "more_body": True})
        await asyncio.sleep(0.2)  # the head leaves the worker and reaches the client
    elif path == "/status":
        v = scope["query_string"].decode()[2:]
        status = True if v == "true" else v[1:] if v.startswith("s") else int(v)
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"unreachable"})
    elif path == "/raises-later":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"begun", "more_body": True})
        await asyncio.sleep(0.2)
        raise RuntimeError("asgi_send_app: raised after the first body part")
    else:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"),
                                (b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"hello"})
