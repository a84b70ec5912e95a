"""edge benchmark harness: edge vs the servers users would run instead.

    bench/run                 # full: 3 interleaved rounds x 10 s per arm
    bench/run --quick         # smoke test: 1 round x 5 s
    bench/run --only hello    # one scenario (or group), repeatable / comma list
    bench/run --only asgi     # the ASGI scenarios (asgi-hello-1w/2w, fastapi)
    bench/run --list          # scenarios and arms

Everything (setup, scenarios, how to read the output) is described in
bench/README.md. Only the standard library is used here; the tools the arms
need (nginx, wrk, a venv with gunicorn/granian/uwsgi/flask/django and
fastapi/uvicorn/httptools/uvloop, the edge binary) are installed or built by
the setup step, idempotently.
"""

# The command line of bench/run, and the run itself: setup, then for each
# scenario its rounds, arms interleaved, then the report. The modules:
# scenarios (what is measured), setup (tools, venv, edge build), arms (how
# each server starts), loadgen (wrk, loadgen.c, slowloris.py), measure (one
# run), procs (process groups, /proc), report (tables, files), common.

import argparse
import atexit
import datetime
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from . import common
from .common import LOGS, log, note
from .measure import fixed_rate, measure_inproc, measure_server
from .procs import _on_signal, cleanup
from .report import fmt_lat, fmt_ms, fmt_rps, write_report
from .scenarios import (EDGE_ARMS, EDGE_OBS, EDGE_PIP, NGINX, NGX_PROXY,
                        SCENARIOS, SOAK_REQUESTS, select)
from .setup import (build_loadgen, make_cert, make_static_files, setup_apt,
                    setup_edge, setup_edge_pip, setup_venv)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 1 round, 5 s per run, 1 s warm-up")
    ap.add_argument("--only", action="append", metavar="SCENARIO",
                    help="scenario name or group (hello, flask, django, static, https, "
                         "slow-client, latency, asgi, proxy, rate-limit, soak); repeatable")
    ap.add_argument("--arms", help="comma list: only these arms (e.g. edge,granian)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 3)")
    ap.add_argument("--duration", type=int, help="seconds per measured run (default 10)")
    ap.add_argument("--warmup", type=int, help="seconds of unmeasured load first (default 2)")
    ap.add_argument("--connections", type=int,
                    help="wrk connections (default 32 per load CPU, at least 64)")
    ap.add_argument("--server-cpus", metavar="LIST",
                    help="CPUs of the servers, taskset list syntax (e.g. 0-7; default "
                         "BENCH_SERVER_CPU or 0); nginx arms get one worker process per CPU")
    ap.add_argument("--load-cpus", metavar="LIST",
                    help="CPUs of the load generators (e.g. 8-15; default BENCH_LOAD_CPU "
                         "or 1); wrk gets one thread per CPU")
    ap.add_argument("--workers", metavar="N[,N...]",
                    help="Python worker count of every arm with workers (edge workers, "
                         "gunicorn -w, granian/uvicorn --workers, uwsgi processes), "
                         "instead of each scenario's own; several counts run each "
                         "worker-bound scenario once per count (hello-1w -> hello-8w)")
    ap.add_argument("--no-build", action="store_true", help="do not run cargo build; use the existing binary")
    ap.add_argument("--no-edge", action="store_true", help="skip the edge arm")
    ap.add_argument("--edge-bin", help="use this edge binary (implies --no-build)")
    ap.add_argument("--python", default=os.environ.get("BENCH_PYTHON", sys.executable),
                    help="interpreter for the venv (must be the Python edge links)")
    ap.add_argument("--rate", type=float,
                    help="latency scenario: requests/s (default: 50%% of the slowest peer's capacity)")
    ap.add_argument("--soak-requests", type=int, default=SOAK_REQUESTS, metavar="N",
                    help=f"soak scenario: requests to send (default {SOAK_REQUESTS:,})")
    ap.add_argument("--list", action="store_true", help="list scenarios and arms")
    args = ap.parse_args()

    if args.list:
        for s in SCENARIOS:
            print(f"{s['name']:<13} [{s['group']}] {s['title']}: {', '.join(s['arms'])}")
        return
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.duration = args.duration or (5 if args.quick else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    scenarios = select(args.only)
    cpu_setup(args)
    if args.workers:
        try:
            counts = [int(w) for w in args.workers.split(",") if w.strip()]
        except ValueError:
            sys.exit(f"--workers: not a comma list of numbers: {args.workers!r}")
        if not counts or min(counts) < 1:
            sys.exit(f"--workers: counts must be >= 1: {args.workers!r}")
        scenarios = with_workers(scenarios, counts)
    arm_filter = set(args.arms.split(",")) if args.arms else None

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    atexit.register(cleanup)
    LOGS.mkdir(parents=True, exist_ok=True)

    # ---- setup
    if not setup_apt():
        sys.exit("nginx and wrk are required")
    # uwsgi only if an arm of a chosen scenario is uwsgi (latency probes it
    # as a rate peer even when --arms leaves it out).
    need_uwsgi = any(s.get("kind") == "rate" or "uwsgi" in s["arms"]
                     and (not arm_filter or "uwsgi" in arm_filter) for s in scenarios)
    # The venv only when a chosen arm runs Python from it (edge's own
    # hello-world, static, proxy, rate-limit and soak arms do not; edge-pip
    # does: its edge is the wheel installed in the venv).
    no_venv = {"nginx return 200", NGINX, NGX_PROXY, *EDGE_ARMS} - {EDGE_PIP}
    need_venv = need_uwsgi or any(
        s.get("venv") or any(a not in no_venv for a in s["arms"]
                             if not arm_filter or a in arm_filter)
        for s in scenarios)
    have_uwsgi = setup_venv(args.python, need_uwsgi) if need_venv else False
    edge_bin, edge_why = setup_edge(args)
    if edge_why:
        note(f"edge arm skipped: {edge_why}")
    pip_why = None
    if any(EDGE_PIP in s["arms"] for s in scenarios) and (not arm_filter or EDGE_PIP in arm_filter):
        pip_why = setup_edge_pip(args)
        if pip_why:
            note(f"edge-pip arm skipped: {pip_why}")
    make_static_files()
    ncpu = os.cpu_count() or 1
    if ncpu < 2 and not common.MULTI:
        note("only one CPU: server and wrk share CPU 0; numbers are not comparable")
        common.SERVER_CPU = common.LOAD_CPU = "0"
    load1 = os.getloadavg()[0]
    if load1 > 0.5:
        note(f"load average {load1:.2f} at start: other work is running, expect noise")

    scenario_why = {}  # scenario name -> why none of its arms can run
    if any(s.get("tls") for s in scenarios):
        why = make_cert()
        if why:
            note(f"https skipped: {why}")
            scenario_why.update({s["name"]: why for s in scenarios if s.get("tls")})
    if any(s.get("kind") == "rate" for s in scenarios):
        why = build_loadgen()
        if why:
            note(f"latency skipped: {why}")
            scenario_why.update({s["name"]: why for s in scenarios if s.get("kind") == "rate"})

    unavailable = {}
    if not have_uwsgi:
        unavailable["uwsgi"] = "not installed (see notes)"
    if edge_why:
        unavailable["edge"] = unavailable[EDGE_OBS] = "no edge binary (see notes)"
    if pip_why:
        unavailable[EDGE_PIP] = "no edge-server wheel installed (see notes)"

    started = datetime.datetime.now().astimezone()
    results = {s["name"]: {} for s in scenarios}
    skipped = {s["name"]: {} for s in scenarios}
    rates = {}
    edge_failures = 0
    rundir = Path(tempfile.mkdtemp(prefix="edge-bench."))
    atexit.register(shutil.rmtree, rundir, True)
    try:
        for sc in scenarios:
            arms = [a for a in sc["arms"] if not arm_filter or a in arm_filter]
            nrounds = 1 if sc.get("kind") == "soak" else args.rounds
            log(f"== {sc['name']}: {sc['title']} — {len(arms)} arms × {nrounds} rounds")
            if sc.get("kind") == "rate" and sc["name"] not in scenario_why:
                rate, how, caps = fixed_rate(args, results, unavailable, rundir, edge_bin)
                rates[sc["name"]] = {"rate": rate, "how": how, "capacity": caps}
                if rate is None:
                    scenario_why[sc["name"]] = how
                else:
                    sc["rate"], sc["rate_note"] = rate, how
                    log(f"  {how}")
            if sc["name"] in scenario_why:
                for arm in arms:
                    skipped[sc["name"]][arm] = scenario_why[sc["name"]]
                continue
            # soak: one long run, not rounds
            for rnd in range(1, nrounds + 1):
                for arm in arms:  # interleaved: A B C A B C ...
                    if arm in unavailable:
                        skipped[sc["name"]].setdefault(arm, unavailable[arm])
                        continue
                    if arm in skipped[sc["name"]]:
                        continue  # failed earlier in this scenario
                    tag = f"{sc['name']}-{re.sub(r'[^a-z0-9]+', '-', arm.lower())}-r{rnd}"
                    t = time.time()
                    if arm == "in-process":
                        r = measure_inproc(sc, args, tag)
                    else:
                        r = measure_server(arm, sc, args, rundir, edge_bin, tag)
                    if "error" in r:
                        msg = f"{r['error']} (log: bench/out/logs/{tag}.log)"
                        skipped[sc["name"]][arm] = msg
                        log(f"  r{rnd} {arm:<18} FAILED: {msg}")
                        if arm == "edge" and not results[sc["name"]].get("edge"):
                            edge_failures += 1
                            if edge_failures >= 2 and not any(
                                    results[s].get("edge") for s in results):
                                unavailable["edge"] = "edge never served in this run (see earlier scenarios)"
                        continue
                    results[sc["name"]].setdefault(arm, []).append(r)
                    extra = ""
                    if "fails" in r:
                        extra = (f" (soak, {r['requests']:,} requests): "
                                 + ("PASS" if not r["fails"] and not r.get("warning")
                                    else "FAIL: " + "; ".join(
                                        r["fails"] + ([r["warning"]] if r.get("warning") else []))))
                    elif "attack" in r:
                        a = r["attack"]
                        extra = (f" unloaded, {fmt_rps(a['rps'])} under attack"
                                 f" ({r['ratio']:.2f}×, attack p99 {fmt_ms(a['p99_us'])}ms,"
                                 f" err {a['status_err'] + a['sock_err']},"
                                 f" attacker open {(a.get('attacker') or {}).get('open_mean', '?')})")
                    elif "p90_us" in r:
                        extra = (f" at {r['rate']:.0f}/s: p50 {fmt_lat(r['p50_us'])}ms"
                                 f" p99 {fmt_lat(r['p99_us'])}ms p99.9 {fmt_lat(r['p999_us'])}ms"
                                 f" err {r['status_err'] + r['sock_err']}")
                    elif "p99_us" in r:
                        extra = (f" p50 {fmt_ms(r['p50_us'])}ms p99 {fmt_ms(r['p99_us'])}ms"
                                 f" err {r['status_err'] + r['sock_err']} rss {r['rss_mib']:.0f}MiB")
                    if "front_cpu_us_per_req" in r:
                        extra += f" front CPU {r['front_cpu_us_per_req']:.1f}µs/req"
                    ctx = f" ctx/req {r['ctx_per_req']:.2f}" if "ctx_per_req" in r else ""
                    log(f"  r{rnd} {arm:<18} {fmt_rps(r['rps']):>9} req/s"
                        f"{ctx}{extra} [{time.time() - t:.0f}s]")
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); writing what was measured")
        note("run interrupted: partial results")
    finally:
        cleanup()

    write_report(started, args, scenarios, arm_filter, results, skipped, rates, edge_bin)


def cpu_setup(args):
    """--server-cpus / --load-cpus: the CPU sets (checked against this
    process's affinity), wrk's threads and connections, nginx's worker
    processes. Without them, today's setup: CPU 0 / CPU 1, wrk -t1 -c64."""
    if args.server_cpus or args.load_cpus:
        common.MULTI = True
        common.SERVER_CPU = args.server_cpus or common.SERVER_CPU
        common.LOAD_CPU = args.load_cpus or common.LOAD_CPU
    try:
        server = common.parse_cpus(common.SERVER_CPU)
        load = common.parse_cpus(common.LOAD_CPU)
    except ValueError as e:
        sys.exit(f"--server-cpus / --load-cpus: {e}")
    if common.MULTI:
        allowed = os.sched_getaffinity(0)
        bad = sorted(set(server + load) - allowed)
        if bad:
            sys.exit(f"CPUs {','.join(map(str, bad))} are not usable here "
                     f"(allowed: {len(allowed)} CPUs, {min(allowed)}-{max(allowed)})")
        shared = sorted(set(server) & set(load))
        if shared:
            note(f"server and load CPU sets share CPU(s) {','.join(map(str, shared))}: "
                 "numbers are not comparable")
        smt = []  # hyperthread siblings split between the two sets
        for c in server:
            try:
                with open(f"/sys/devices/system/cpu/cpu{c}/topology/thread_siblings_list") as f:
                    sib = common.parse_cpus(f.read().strip())
            except (OSError, ValueError):
                continue
            smt += [f"{c}+{o}" for o in sib if o in load]
        if smt:
            note(f"server and load CPUs are hyperthreads of the same cores ({', '.join(smt[:8])}"
                 f"{' …' if len(smt) > 8 else ''}): wrk competes with the servers for those "
                 "cores; prefer sets that split whole cores (see lscpu -e)")
    common.WRK_THREADS = len(load)
    common.NGINX_WORKERS = len(server)
    if args.connections is None:
        args.connections = max(64, 32 * len(load))


def with_workers(scenarios, counts):
    """The scenarios with --workers' counts: a worker-bound scenario (one
    whose Python workers serve the measured path) once per count, renamed
    (hello-1w -> hello-8w, flask -> flask-8w, title "8 workers"); static and
    proxy scenarios (the front answers alone) once, with the largest count."""
    out, seen = [], set()
    for sc in scenarios:
        if sc.get("static") and sc.get("kind") != "soak" or sc.get("proxy"):
            variants = [dict(sc, workers=max(counts))]
        else:
            variants = []
            for n in counts:
                plural = f"{n} worker{'s' if n > 1 else ''}"
                variants.append(dict(
                    sc, workers=n,
                    name=re.sub(r"-\d+w$", "", sc["name"]) + f"-{n}w",
                    title=re.sub(r"\b\d+ workers?\b", plural, sc["title"])))
        for v in variants:
            if v["name"] not in seen:
                seen.add(v["name"])
                out.append(v)
    return out
