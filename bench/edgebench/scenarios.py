"""The scenarios and their arms: names, apps, URLs, the answer each run
checks, and the knobs of the attack (slow-client), open-loop (latency) and
ASGI scenarios."""

import json
import os
import sys

GUNI = "nginx→gunicorn"
GRANIAN = "granian"
NGINX = "nginx"
# edge with its observability on: combined access log to a file and the
# [metrics] listener (issue 8: under 5% of hello-world throughput vs "edge",
# which runs with access = "off" and no metrics).
EDGE_OBS = "edge-obs"
# edge with a [[rate_limit]] rule on the measured prefix that never refuses
# (rate = "1000000/s", burst = 1000000): the limiter's own cost (issue 16).
EDGE_RL = "edge+rate_limit"
# edge from the `edge-server` wheel (issue 14): built by .ci/build-wheels
# for the bench venv's python and pip-installed into it; runs as
# `.venv/bin/edge --conf` with the same config as "edge" minus `venv =`
# (the interpreter is the venv's). Goal: >= 0.98x "edge" (the binary).
EDGE_PIP = "edge-pip"
EDGE_ARMS = ("edge", EDGE_OBS, EDGE_RL, EDGE_PIP)

APP_ARMS = [
    "edge",
    GUNI,
    "gunicorn sync",
    "gunicorn gthread",
    GRANIAN,
    "uwsgi",
]
HELLO_ARMS = ["edge", EDGE_PIP, EDGE_OBS] + APP_ARMS[1:] + ["nginx return 200", "in-process"]


def check_hello(body):
    return body == b"Hello, World!"


def check_json(body):
    try:
        return json.loads(body) == {"message": "Hello, World!"}
    except ValueError:
        return False


def check_size(n):
    return lambda body: len(body) == n


STATIC_SIZES = {"1k": 1024, "64k": 64 * 1024, "4m": 4 * 1024 * 1024}

SCENARIOS = [
    dict(name="hello-1w", group="hello", title="WSGI hello world, 1 worker",
         module="hello:app", path="/", workers=1, check=check_hello,
         arms=HELLO_ARMS, baselines=[GUNI, GRANIAN, "nginx return 200"]),
    dict(name="hello-2w", group="hello", title="WSGI hello world, 2 workers",
         module="hello:app", path="/", workers=2, check=check_hello,
         arms=HELLO_ARMS, baselines=[GUNI, GRANIAN, "nginx return 200"]),
    dict(name="flask", group="flask", title="Flask JSON endpoint, 1 worker",
         module="flaskapp:app", path="/json", workers=1, check=check_json,
         arms=APP_ARMS[:1] + [EDGE_PIP] + APP_ARMS[1:] + ["in-process"],
         baselines=[GUNI, GRANIAN, "in-process"],
         venv=True),
    dict(name="django", group="django", title="Django JSON view, 1 worker",
         module="djangoapp:app", path="/json", workers=1, check=check_json,
         arms=APP_ARMS + ["in-process"], baselines=[GUNI, GRANIAN, "in-process"],
         venv=True),
] + [
    dict(name=f"static-{k}", group="static", title=f"static file, {k.upper()}iB",
         module="hello:app", path=f"/static/{k}.bin", workers=1,
         check=check_size(n), arms=["edge", NGINX], baselines=[NGINX],
         static=True)
    for k, n in STATIC_SIZES.items()
]

# The three scenarios below are not plain closed-loop wrk runs (`kind`):
#   https        wrk against https://; the arms terminate TLS themselves with
#                a self-signed P-256 certificate made for the run in out/tls/.
#   slow-client  kind="slow": each run measures the server unloaded, then
#                again while bench/slowloris.py (pinned next to wrk) holds
#                ATTACK_CONNS slow connections open; the figure is the ratio.
#   latency      kind="rate": an open-loop fixed-rate run with bench/loadgen.c
#                (wrk2 is not in Debian) at RATE_FRACTION of the slowest
#                peer's closed-loop capacity (measured in this run's hello-1w,
#                or probed just before; --rate overrides).
GUNI_TLS = "nginx-TLS→gunicorn"
ATTACK_CONNS = int(os.environ.get("BENCH_ATTACK_CONNS", "500"))
ATTACK_BODIES = int(os.environ.get("BENCH_ATTACK_BODIES", "50"))
ATTACK_SETTLE = float(os.environ.get("BENCH_ATTACK_SETTLE", "5"))
RATE_FRACTION = 0.5
RATE_CONNS = int(os.environ.get("BENCH_RATE_CONNS", "16"))
RATE_PEERS = [GUNI, GRANIAN, "uwsgi"]

SCENARIOS += [
    dict(name="https", group="https", title="HTTPS hello world, 1 worker",
         module="hello:app", path="/", workers=1, check=check_hello,
         arms=["edge", GUNI_TLS, GRANIAN], baselines=[GUNI_TLS, GRANIAN],
         tls=True),
    dict(name="slow-client", group="slow-client", kind="slow",
         title="hello world under a slow-client attack, 1 worker",
         module="hello:app", path="/", workers=1, check=check_hello,
         arms=["edge", "gunicorn sync", GUNI, "nginx return 200"], baselines=[]),
    dict(name="latency", group="latency", kind="rate",
         title="fixed-rate (open-loop) latency, hello world, 1 worker",
         module="hello:app", path="/", workers=1, check=check_hello,
         arms=["edge", GUNI, GRANIAN, "uwsgi"], baselines=[GUNI, GRANIAN]),
]

# ASGI (issue 9): the same apps' ASGI twins, against what users run for ASGI
# today, all with the scenario's worker count:
#   nginx→gunicorn-uvicorn  nginx over a Unix socket to gunicorn -k
#                           uvicorn.workers.UvicornWorker (the classic chain)
#   uvicorn                 uvicorn alone, --no-access-log
#   granian                 granian --interface asgi
# uvicorn's HTTP parser and event loop (httptools + uvloop when the venv has
# them, h11 + asyncio otherwise) are chosen at setup and printed under each
# table (ASGI_STACK); the UvicornWorker's "auto" picks the same.
GUNI_UVI = "nginx→gunicorn-uvicorn"
UVICORN = "uvicorn"
ASGI_ARMS = ["edge", GUNI_UVI, UVICORN, GRANIAN, "in-process"]
ASGI_PEERS = [GUNI_UVI, UVICORN, GRANIAN]
ASGI_STACK = {"http": "h11", "loop": "asyncio", "worker": "uvicorn.workers.UvicornWorker"}
# edge's [app] max_concurrency for the ASGI scenarios: requests one worker
# holds at once on its event loop (more wait in the queue for another
# worker). 1000 is edge's default, spelled out: far above wrk's 64
# connections, so it never caps a worker below what the others accept
# (uvicorn and granian put no limit on it by default).
ASGI_MAX_CONCURRENCY = int(os.environ.get("BENCH_ASGI_MAX_CONCURRENCY", "1000"))

SCENARIOS += [
    dict(name="asgi-hello-1w", group="asgi", title="ASGI hello world, 1 worker",
         module="asgihello:app", path="/", workers=1, check=check_hello,
         arms=ASGI_ARMS, baselines=ASGI_PEERS, interface="asgi", venv=True),
    dict(name="asgi-hello-2w", group="asgi", title="ASGI hello world, 2 workers",
         module="asgihello:app", path="/", workers=2, check=check_hello,
         arms=ASGI_ARMS, baselines=ASGI_PEERS, interface="asgi", venv=True),
    dict(name="fastapi", group="asgi", title="FastAPI JSON endpoint, 1 worker",
         module="fastapiapp:app", path="/json", workers=1, check=check_json,
         arms=ASGI_ARMS, baselines=ASGI_PEERS + ["in-process"], interface="asgi",
         venv=True),
]


# proxy (issue 17): edge [[proxy]] vs nginx proxy_pass, both to the same
# upstream, an nginx `return 200 "Hello, World!"` started with each arm on
# its own port (pinned to the server CPU too: both arms pay for it alike).
# Both keep PROXY_KEEPALIVE idle connections to it (nginx `keepalive N` +
# HTTP/1.1 upstream, edge `keepalive = N`) and send X-Forwarded-*.
NGX_PROXY = "nginx proxy_pass"
PROXY_KEEPALIVE = int(os.environ.get("BENCH_KEEPALIVE", "32"))
# proxy-kept: both keep more idle connections than there are clients, so
# neither ever closes one to reconnect (nginx closes a freed connection at
# once above `keepalive`, edge only after a second idle): the proxies' cost
# per request with no connect churn.
PROXY_KEEPALIVE_ALL = 4096
# rate-limit (issue 16): the same prefix with and without the rule; the
# goal is edge+rate_limit / edge >= RL_GOAL, plus the front's CPU per
# request (its pid from the "front ready pid=" log line).
RL_GOAL = 0.95

SCENARIOS += [
    dict(name="proxy", group="proxy", title="reverse proxy to an nginx return 200 upstream",
         module="hello:app", path="/api/", workers=1, check=check_hello,
         arms=["edge", NGX_PROXY], baselines=[NGX_PROXY], proxy=True),
    dict(name="proxy-kept", group="proxy",
         title="reverse proxy, every upstream connection kept (no reconnects)",
         module="hello:app", path="/api/", workers=1, check=check_hello,
         arms=["edge", NGX_PROXY], baselines=[NGX_PROXY], proxy=True,
         keepalive=PROXY_KEEPALIVE_ALL),
    dict(name="rate-limit-hello", group="rate-limit",
         title="WSGI hello world, 1 worker, with and without a [[rate_limit]] that never refuses",
         module="hello:app", path="/", workers=1, check=check_hello,
         arms=["edge", EDGE_RL], baselines=["edge"], front_cpu=True),
    dict(name="rate-limit-static-1k", group="rate-limit",
         title="static file 1 KiB, with and without a [[rate_limit]] that never refuses",
         module="hello:app", path="/static/1k.bin", workers=1,
         check=check_size(1024), arms=["edge", EDGE_RL], baselines=["edge"],
         static=True, front_cpu=True),
]

# soak (issue 19): kind="soak", edge only. bench/soakgen.py (asyncio, raw
# sockets, pinned to the load CPU) sends SOAK_REQUESTS (--soak-requests)
# mixing keep-alive, new connections, uploads below and above
# limits.body_buffer (spooled to a dedicated limits.temp_dir), static files,
# streamed responses and client aborts, while the harness samples every
# edge process's RSS and descriptors and the temp files every
# SOAK_SAMPLE seconds. Pass: RSS flat within SOAK_RSS_TOLERANCE after the
# warm-up (the first SOAK_WARMUP of the requests), descriptors and temp
# files back to their idle count after the load, no error.
SOAK_REQUESTS = 2_000_000
SOAK_CONNS = int(os.environ.get("BENCH_SOAK_CONNS", "32"))
SOAK_SAMPLE = float(os.environ.get("BENCH_SOAK_SAMPLE", "2"))
SOAK_WARMUP = 0.2
SOAK_RSS_TOLERANCE = 0.05
SOAK_BODY_BUFFER = 64 * 1024

SCENARIOS += [
    dict(name="soak", group="soak", kind="soak",
         title="soak: mixed traffic, memory / descriptors / temp files over time, 2 workers",
         module="soakapp:app", path="/", workers=2, check=check_hello,
         arms=["edge"], baselines=[], static=True),
]


def select(only):
    if not only:  # soak is long (2M requests): only when asked for
        return [s for s in SCENARIOS if s["name"] != "soak"]
    wanted = [w for o in only for w in o.split(",") if w]
    chosen = []
    for w in wanted:
        hits = [s for s in SCENARIOS if s["name"] == w or s["group"] == w]
        if not hits:
            sys.exit(f"unknown scenario {w!r}; try --list")
        chosen += [s for s in hits if s not in chosen]
    return chosen
