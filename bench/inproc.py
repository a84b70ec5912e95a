"""In-process baseline: call a WSGI or ASGI app directly, no server, no socket.

    python inproc.py MODULE:ATTR PATH SECONDS
    python inproc.py --asgi MODULE:ATTR PATH SECONDS

WSGI: builds a gunicorn-like environ once, then for SECONDS calls the app
with a fresh copy of it (new dict, new wsgi.input), runs start_response,
drains and closes the body.

ASGI (--asgi): builds a uvicorn-like HTTP scope once, then for SECONDS
awaits `app(scope, receive, send)` with a fresh copy of it (new dict, new
header list) inside one asyncio event loop (uvloop's when it is installed):
`receive` hands over an empty GET body, `send` records the status and
drops the rest. No lifespan cycle is run (the bench apps need none).

Prints one JSON line: calls, seconds, calls/s, and the CPU time / context
switches of this process over the loop. This is the "app's own cost" the
issue's Flask/Django/FastAPI goals compare against.
"""

import asyncio
import importlib
import io
import json
import resource
import sys
import time


def timed_loop(run100, seconds):
    """Call run100() (100 app calls) until `seconds` have passed; the JSON
    figures. The caller has warmed the app up."""
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    calls = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        run100()
        calls += 100
        if time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "calls": calls,
        "seconds": elapsed,
        "rps": calls / elapsed,
        "cpu_s": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
        "ctx": (r1.ru_nvcsw - r0.ru_nvcsw) + (r1.ru_nivcsw - r0.ru_nivcsw),
    }


def run_asgi(app, path, seconds):
    path_info, _, query = path.partition("?")
    base = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 40000),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": path_info,
        "raw_path": path_info.encode(),
        "query_string": query.encode(),
    }
    headers = [(b"host", b"127.0.0.1:8000")]
    request = {"type": "http.request", "body": b"", "more_body": False}
    status_seen = []

    async def receive():
        return request

    async def send(message):
        if message["type"] == "http.response.start":
            status_seen.append(message["status"])

    async def batch(n):
        for _ in range(n):
            scope = dict(base)
            scope["headers"] = list(headers)
            await app(scope, receive, send)

    try:
        import uvloop
        loop = uvloop.new_event_loop()
        loop_name = "uvloop"
    except ImportError:
        loop = asyncio.new_event_loop()
        loop_name = "asyncio"
    asyncio.set_event_loop(loop)
    loop.run_until_complete(batch(200))  # warm-up: lazy imports, caches
    if not status_seen or status_seen[-1] != 200:
        print(json.dumps({"error": f"app answered {status_seen[-1:]!r}"}))
        sys.exit(1)
    # One event-loop entry per 100 calls, so the figure is the app's cost,
    # not run_until_complete's.
    r = timed_loop(lambda: loop.run_until_complete(batch(100)), seconds)
    r["loop"] = loop_name
    loop.close()
    return r


def main():
    argv = sys.argv[1:]
    asgi = argv[:1] == ["--asgi"]
    if asgi:
        argv = argv[1:]
    target, path, seconds = argv[0], argv[1], float(argv[2])
    mod_name, _, attr = target.partition(":")
    app = getattr(importlib.import_module(mod_name), attr or "application")
    if asgi:
        print(json.dumps(run_asgi(app, path, seconds)))
        return
    path_info, _, query = path.partition("?")
    base = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path_info,
        "RAW_URI": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "40000",
        "HTTP_HOST": "127.0.0.1:8000",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    status_seen = []

    def start_response(status, headers, exc_info=None):
        status_seen.append(status)
        return lambda data: None

    def one():
        env = dict(base)
        env["wsgi.input"] = io.BytesIO(b"")
        body = app(env, start_response)
        try:
            for _ in body:
                pass
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()

    for _ in range(200):  # warm-up: lazy imports, caches
        one()
    if not status_seen or not status_seen[-1].startswith("200"):
        print(json.dumps({"error": f"app answered {status_seen[-1:]!r}"}))
        sys.exit(1)

    def run100():
        for _ in range(100):
            one()

    print(json.dumps(timed_loop(run100, seconds)))


if __name__ == "__main__":
    main()
