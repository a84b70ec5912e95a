"""A raw ASGI 3 app (no framework) for tests/asgi.rs and tests/asgi_websocket.rs.

Standard library only, so it runs without the test venv. `app` is a
coroutine function; `instance_app` is an object whose `__call__` is a
coroutine function (both must be detected as ASGI by interface = "auto").

HTTP routes (every JSON answer carries "pid"):
  /scope...          JSON: the scope (bytes as {"bytes": latin-1 text},
                     tuples and lists as arrays), the Python type name of
                     each scope value ("types"), every receive() message
                     ("events": type, more_body, body length), the request
                     body ("body", latin-1) and its length
  /pid               JSON {"pid"}
  /sleep?s=F         await asyncio.sleep(F); JSON {"slept", "pid",
                     "inflight_max"}: the most requests this process ever
                     had in flight at once (counted over /sleep only)
  /inflight-reset    sets that maximum back to 0
  /disconnect?id=K   receives the (empty) body, then awaits receive() again
                     (up to 30 s) and records the message type under K
  /seen?id=K         JSON {"state": "waiting" | the recorded type | null}
  /exit              os._exit(1) mid-request
  /asleep?s=F&id=K   await asyncio.sleep(F) (for the timeout tests); if the
                     task is cancelled meanwhile, records "cancelled" under K
  /block?s=F         time.sleep(F): blocks the event loop itself
  /pathsend?path=P   http.response.start (content-type application/x-test,
                     x-pathsend: yes|no) then http.response.pathsend for the
                     absolute path P when the server lists the extension in
                     scope["extensions"], else the file's bytes as a body
  /stream?n=N        N body messages "part i\\n" (more_body=True between),
                     an asyncio.sleep(0.01) between them, then an empty last one
  /state             JSON {"state": scope["state"] (copied), "pid"}
  /state-mutate      sets scope["state"]["mutated"] = pid (must not leak
                     into later requests: each gets a shallow copy)
  /exc               raises (the server answers 500)
  /task              JSON {"name", "type"}: the name and the class name of
                     the asyncio task running this request
  anything else      200 "asgi"

WebSocket routes:
  /ws-scope          accepts (with the first offered subprotocol, if any)
                     and sends the scope as JSON text, then closes 1000

Lifespan: when ASGI_TASK_FACTORY is set, on startup installs a task
factory that makes `MarkedTask`s (the server must then create its request
tasks through the loop); on startup stores {"token": "lifespan-state-ok", "startup_pid":
pid} in scope["state"] (when the server gives a state dict); when
ASGI_MARKER_DIR is set, writes <dir>/startup-<pid> and on shutdown
<dir>/shutdown-<pid>.
"""
import asyncio
import json
import os
import time
from urllib.parse import parse_qs

SEEN = {}
INFLIGHT = {"now": 0, "max": 0}


def _jsonable(v):
    if isinstance(v, (bytes, bytearray)):
        return {"bytes": bytes(v).decode("latin-1")}
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return repr(v)


def _types(scope):
    out = {}
    for k, v in scope.items():
        out[k] = type(v).__name__
    hdrs = scope.get("headers") or []
    out["headers[i]"] = sorted({type(h).__name__ for h in hdrs})
    out["headers[i][j]"] = sorted({type(x).__name__ for h in hdrs for x in h})
    client = scope.get("client")
    if client is not None:
        out["client[j]"] = [type(x).__name__ for x in client]
    server = scope.get("server")
    if server is not None:
        out["server[j]"] = [type(x).__name__ for x in server]
    return out


def _marker(name):
    d = os.environ.get("ASGI_MARKER_DIR")
    if d:
        with open(os.path.join(d, "%s-%d" % (name, os.getpid())), "w") as f:
            f.write("ok\n")


async def _send_json(send, obj, status=200, headers=()):
    body = json.dumps(obj).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())] + list(headers),
    })
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive):
    events = []
    body = b""
    while True:
        msg = await receive()
        events.append({
            "type": msg.get("type"),
            "more_body": msg.get("more_body", False),
            "body_len": len(msg.get("body", b"")),
        })
        if msg["type"] != "http.request":
            break
        body += msg.get("body", b"")
        if not msg.get("more_body", False):
            break
    return body, events


class MarkedTask(asyncio.Task):
    """A task made by this app's task factory (ASGI_TASK_FACTORY)."""


def _marked_factory(loop, coro, **kwargs):
    return MarkedTask(coro, loop=loop, **kwargs)


async def lifespan(scope, receive, send):
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            if os.environ.get("ASGI_TASK_FACTORY"):
                asyncio.get_running_loop().set_task_factory(_marked_factory)
            state = scope.get("state")
            if isinstance(state, dict):
                state["token"] = "lifespan-state-ok"
                state["startup_pid"] = os.getpid()
            _marker("startup")
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            _marker("shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def websocket(scope, receive, send):
    msg = await receive()
    assert msg["type"] == "websocket.connect", msg
    subprotocols = scope.get("subprotocols") or []
    accept = {"type": "websocket.accept"}
    if subprotocols:
        accept["subprotocol"] = subprotocols[0]
    await send(accept)
    await send({
        "type": "websocket.send",
        "text": json.dumps({"scope": _jsonable(scope), "types": _types(scope),
                            "pid": os.getpid()}),
    })
    await send({"type": "websocket.close", "code": 1000})


async def http(scope, receive, send):
    path = scope["path"]
    qs = parse_qs(scope["query_string"].decode("latin-1"))

    def arg(name, default=None):
        return qs.get(name, [default])[0]

    pid = os.getpid()
    if path.startswith("/scope"):
        body, events = await _read_body(receive)
        await _send_json(send, {
            "scope": _jsonable(scope),
            "types": _types(scope),
            "events": events,
            "body": body.decode("latin-1"),
            "body_len": len(body),
            "pid": pid,
        })
    elif path == "/pid":
        await _send_json(send, {"pid": pid})
    elif path == "/sleep":
        seconds = float(arg("s", "0.2"))
        INFLIGHT["now"] += 1
        INFLIGHT["max"] = max(INFLIGHT["max"], INFLIGHT["now"])
        try:
            await asyncio.sleep(seconds)
        finally:
            INFLIGHT["now"] -= 1
        await _send_json(send, {"slept": seconds, "pid": pid,
                                "inflight_max": INFLIGHT["max"]})
    elif path == "/inflight-reset":
        INFLIGHT["max"] = 0
        await _send_json(send, {"pid": pid})
    elif path == "/disconnect":
        key = arg("id", "")
        await _read_body(receive)
        SEEN[key] = "waiting"
        try:
            msg = await asyncio.wait_for(receive(), 30)
            SEEN[key] = msg.get("type")
        except asyncio.TimeoutError:
            SEEN[key] = "timeout"
            await _send_json(send, {"pid": pid, "seen": "timeout"})
    elif path == "/seen":
        await _send_json(send, {"state": SEEN.get(arg("id", "")), "pid": pid})
    elif path == "/exit":
        os._exit(1)
    elif path == "/asleep":
        key = arg("id", "")
        SEEN[key] = "sleeping"
        try:
            await asyncio.sleep(float(arg("s", "10")))
        except asyncio.CancelledError:
            SEEN[key] = "cancelled"
            raise
        SEEN[key] = "finished"
        await _send_json(send, {"pid": pid, "slept": True})
    elif path == "/block":
        time.sleep(float(arg("s", "10")))
        await _send_json(send, {"pid": pid, "blocked": True})
    elif path == "/pathsend":
        file_path = arg("path")
        has = "http.response.pathsend" in (scope.get("extensions") or {})
        await send({
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/x-test"),
                        (b"x-pathsend", b"yes" if has else b"no")],
        })
        if has:
            await send({"type": "http.response.pathsend", "path": file_path})
        else:
            with open(file_path, "rb") as f:
                data = f.read()
            await send({"type": "http.response.body", "body": data})
    elif path == "/stream":
        n = int(arg("n", "10"))
        await send({
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        })
        for i in range(n):
            await send({"type": "http.response.body",
                        "body": b"part %d\n" % i, "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})
    elif path == "/state":
        await _send_json(send, {"state": _jsonable(scope.get("state")),
                                "has_state": "state" in scope, "pid": pid})
    elif path == "/state-mutate":
        scope["state"]["mutated"] = pid
        await _send_json(send, {"state": _jsonable(scope.get("state")), "pid": pid})
    elif path == "/task":
        task = asyncio.current_task()
        await _send_json(send, {"name": task.get_name(), "type": type(task).__name__,
                                "pid": pid})
    elif path == "/exc":
        raise RuntimeError("asgi_scope_app: /exc raised on purpose")
    else:
        body = b"asgi"
        await send({
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"),
                        (b"content-length", str(len(body)).encode())],
        })
        await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    kind = scope["type"]
    if kind == "lifespan":
        await lifespan(scope, receive, send)
    elif kind == "websocket":
        await websocket(scope, receive, send)
    else:
        await http(scope, receive, send)


class InstanceApp:
    """An object whose __call__ is a coroutine function."""

    async def __call__(self, scope, receive, send):
        await app(scope, receive, send)


instance_app = InstanceApp()
