"""In-process baseline: call a WSGI app directly, no server, no socket.

    python inproc.py MODULE:ATTR PATH SECONDS

Builds a gunicorn-like environ once, then for SECONDS calls the app with a
fresh copy of it (new dict, new wsgi.input), runs start_response, drains and
closes the body. Prints one JSON line: calls, seconds, calls/s, and the
CPU time / context switches of this process over the loop. This is the
"app's own cost" the issue's Flask/Django goal compares against.
"""

import importlib
import io
import json
import resource
import sys
import time


def main():
    target, path, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    mod_name, _, attr = target.partition(":")
    app = getattr(importlib.import_module(mod_name), attr or "application")
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
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    calls = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        for _ in range(100):
            one()
        calls += 100
        if time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "calls": calls,
        "seconds": elapsed,
        "rps": calls / elapsed,
        "cpu_s": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
        "ctx": (r1.ru_nvcsw - r0.ru_nvcsw) + (r1.ru_nivcsw - r0.ru_nivcsw),
    }))


if __name__ == "__main__":
    main()
