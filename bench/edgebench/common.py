"""Paths, environment knobs and small helpers shared by every module.

`SERVER_CPU` / `LOAD_CPU` (taskset CPU lists, e.g. "0-7"), `WRK_THREADS`,
`NGINX_WORKERS` and `MULTI` are set by the command (--server-cpus /
--load-cpus), so read them as `common.SERVER_CPU`, not through
`from .common import`.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
REPO = BENCH.parent
APPS = BENCH / "apps"
# BENCH_VENV: a prefix whose bin/ has python, gunicorn, granian ... and whose
# lib/python3.X/site-packages has the packages (the offline kit's own prefix).
VENV = Path(os.environ.get("BENCH_VENV") or BENCH / ".venv")
OUT = BENCH / "out"
LOGS = OUT / "logs"
FILES = OUT / "files"  # generated static files (not committed)
LUA = BENCH / "report.lua"
TLS_DIR = OUT / "tls"  # self-signed certificate made for the run (not committed)
CERT, KEY = TLS_DIR / "cert.pem", TLS_DIR / "key.pem"
LOADGEN_SRC = BENCH / "loadgen.c"
LOADGEN = OUT / "loadgen"  # built from loadgen.c by the setup step
ATTACKER = BENCH / "slowloris.py"

SERVER_CPU = os.environ.get("BENCH_SERVER_CPU", "0")
LOAD_CPU = os.environ.get("BENCH_LOAD_CPU", "1")
# Set by --server-cpus / --load-cpus (cli.py): wrk -t, nginx worker_processes,
# and whether the header names the CPU sets (False: today's one-CPU header).
WRK_THREADS = 1
NGINX_WORKERS = 1
MULTI = False
# BENCH_OFFLINE=1 (the kit's run.sh): no apt-get, no pip, no venv creation;
# what is missing is noted and its arms skipped.
OFFLINE = os.environ.get("BENCH_OFFLINE") == "1"
NGINX_MIME = os.environ.get("BENCH_NGINX_MIME", "/etc/nginx/mime.types")
GTHREAD_THREADS = int(os.environ.get("BENCH_GTHREAD_THREADS", "4"))
READY_TIMEOUT = float(os.environ.get("BENCH_READY_TIMEOUT", "30"))
WRK_TIMEOUT = "5s"  # per-request timeout inside wrk; slower = counted as error


def parse_cpus(spec):
    """taskset's list syntax ("0-7", "0,2,4-6") -> sorted CPU numbers."""
    cpus = set()
    for part in str(spec).split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        lo, hi = int(lo), int(hi or lo)
        if hi < lo:
            raise ValueError(f"bad CPU range {part!r}")
        cpus.update(range(lo, hi + 1))
    if not cpus:
        raise ValueError(f"empty CPU list {spec!r}")
    return sorted(cpus)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sh(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, **kw)


def venv_env():
    env = dict(os.environ)
    env["VIRTUAL_ENV"] = str(VENV)
    env["PATH"] = f"{VENV / 'bin'}:{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(APPS)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("PYTHONHOME", None)
    return env


def toml_str(s):
    return json.dumps(str(s))  # a JSON string is a valid TOML basic string


NOTES = []  # printed above the tables


def note(msg):
    log(f"NOTE: {msg}")
    NOTES.append(msg)
