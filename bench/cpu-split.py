#!/usr/bin/env python3
"""Where a server's CPU goes per request, process by process: user and
system time and voluntary / involuntary context switches (all threads),
from /proc, over one wrk run.

    bench/cpu-split.py                                 # edge, ASGI hello, 1 worker
    bench/cpu-split.py --arm granian
    bench/cpu-split.py --interface wsgi --app hello:app --workers 2
    bench/cpu-split.py --worker-policy other           # workers put back on SCHED_OTHER
    bench/cpu-split.py --rounds 3 --arm edge --arm granian   # interleaved

The server runs on BENCH_SERVER_CPU (default 0) and `wrk -t1 -c64` on
BENCH_LOAD_CPU (default 1), as in `bench/run`; a 2 s warm-up precedes
each measured run. `--worker-policy other` switches every thread of
edge's workers to SCHED_OTHER with `chrt -o` before the load (edge's own
policy for them is SCHED_BATCH): the before/after of that choice on one
binary. granian and the apps come from bench/.venv and bench/apps (make
them with `bench/run --only asgi` once). Standard library only.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
APPS = HERE / "apps"
VENV = Path(os.environ.get("BENCH_VENV", HERE / ".venv"))
SERVER_CPU = os.environ.get("BENCH_SERVER_CPU", "0")
LOAD_CPU = os.environ.get("BENCH_LOAD_CPU", "1")
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def edge_argv(args, port, tmp):
    conf = Path(tmp) / "edge.toml"
    lines = ["[server]", f'listen = ["127.0.0.1:{port}"]', "", "[app]",
             f'module = "{args.app}"', f'pythonpath = ["{APPS}"]',
             f"workers = {args.workers}", f'interface = "{args.interface}"',
             'lifespan = "off"']
    if args.interface == "asgi":
        lines += [f'venv = "{VENV}"', 'loop = "uvloop"']
    lines += ["", "[log]", 'access = "off"']
    conf.write_text("\n".join(lines) + "\n")
    return [args.edge_bin, "--conf", str(conf)]


def granian_argv(args, port):
    iface = (["--interface", "asgi", "--loop", "uvloop"] if args.interface == "asgi"
             else ["--interface", "wsgi"])
    return [str(VENV / "bin" / "granian"), *iface, "--workers", str(args.workers),
            "--host", "127.0.0.1", "--port", str(port), "--no-ws",
            "--working-dir", str(APPS), args.app]


def session_pids(sid):
    out = subprocess.run(["pgrep", "-s", str(sid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def comm(pid):
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def sample(pid):
    """(user ticks, system ticks, voluntary, involuntary) over all threads."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        user, system = int(fields[11]), int(fields[12])
        vol = invol = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            for line in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches"):
                    vol += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches"):
                    invol += int(line.split()[1])
        return user, system, vol, invol
    except (OSError, ValueError):
        return None


def wrk(port, seconds):
    r = subprocess.run(["taskset", "-c", LOAD_CPU, "wrk", "-t1", "-c64", f"-d{seconds}",
                        f"http://127.0.0.1:{port}/"], capture_output=True, text=True,
                       timeout=seconds + 30)
    for line in r.stdout.splitlines():
        if "requests in" in line:
            return int(line.split()[0])
    sys.exit(f"wrk gave no count:\n{r.stdout}{r.stderr}")


def one_run(args, arm):
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        argv = edge_argv(args, port, tmp) if arm == "edge" else granian_argv(args, port)
        server = subprocess.Popen(["taskset", "-c", SERVER_CPU, *argv],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        sys.exit(f"{arm} did not start ({argv})")
                    time.sleep(0.1)
            time.sleep(1)
            if arm == "edge" and args.worker_policy == "other":
                for pid in session_pids(server.pid):
                    if comm(pid) == "edge-worker":
                        for tid in os.listdir(f"/proc/{pid}/task"):
                            subprocess.run(["chrt", "-o", "-p", "0", tid], check=True)
            wrk(port, 2)
            names = {p: comm(p) for p in session_pids(server.pid)}
            before = {p: sample(p) for p in names}
            n = wrk(port, args.duration)
            after = {p: sample(p) for p in session_pids(server.pid)}
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
    label = arm + (" (workers SCHED_OTHER)" if arm == "edge" and args.worker_policy == "other"
                   else "")
    print(f"\n{label}: {n / args.duration:,.0f} req/s ({n:,} requests in {args.duration} s)")
    print("| process | user µs/req | system µs/req | voluntary sw/req | involuntary sw/req |")
    print("|---|---:|---:|---:|---:|")
    total = [0.0, 0.0, 0.0, 0.0]
    for pid in sorted(after):
        a, b = after[pid], before.get(pid)
        if a is None or b is None:
            continue
        row = [(a[0] - b[0]) / TICK * 1e6 / n, (a[1] - b[1]) / TICK * 1e6 / n,
               (a[2] - b[2]) / n, (a[3] - b[3]) / n]
        if sum(row) == 0:
            continue  # idle (the arbiter, granian's main process)
        total = [t + x for t, x in zip(total, row)]
        print(f"| {names.get(pid, '?')} ({pid}) | {row[0]:.1f} | {row[1]:.1f} | {row[2]:.3f} | {row[3]:.3f} |")
    print(f"| all | {total[0]:.1f} | {total[1]:.1f} | {total[2]:.3f} | {total[3]:.3f} |")
    print(f"CPU per request: {total[0] + total[1]:.1f} µs")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arm", action="append", choices=["edge", "granian"],
                    help="repeatable; default edge")
    ap.add_argument("--interface", choices=["asgi", "wsgi"], default="asgi")
    ap.add_argument("--app", help="MODULE:ATTR in bench/apps (default asgihello:app or hello:app)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--duration", type=int, default=5, help="seconds (whole)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--worker-policy", choices=["edge", "other"], default="edge",
                    help="other: edge's workers put back on SCHED_OTHER")
    ap.add_argument("--edge-bin", default=str(REPO / "target" / "release" / "edge"))
    args = ap.parse_args()
    args.app = args.app or ("asgihello:app" if args.interface == "asgi" else "hello:app")
    arms = args.arm or ["edge"]
    for _ in range(args.rounds):
        for arm in arms:
            one_run(args, arm)


if __name__ == "__main__":
    main()
