"""One measured run of an arm (fresh server, checked answer, warm-up, load
between two /proc snapshots, memory), the in-process baseline, and the
fixed rate of the latency scenario."""

import argparse
import http.client
import json
import os
import re
import subprocess
import time

from . import common
from .arms import http_get, launch, wait_ready
from .common import (APPS, BENCH, LOGS, READY_TIMEOUT, VENV, free_port, log,
                     venv_env)
from .loadgen import Attacker, run_loadgen, run_wrk
from .procs import WRK_LIVE, Group, comm, delta, edge_front_rss, memory, snapshot
from .report import fmt_rps, med
from .soak import run_soak
from .scenarios import (ATTACK_CONNS, ATTACK_SETTLE, EDGE_ARMS, RATE_FRACTION,
                        RATE_PEERS, SCENARIOS)

VANISHED = []  # "comm (pid N)" of tree processes that exited during a measured run


def measured(group, fn):
    """Run fn() (one load run) between two /proc snapshots of the tree:
    returns fn's result, context switches, CPU µs, pids. A process of the
    tree that exits meanwhile (a crashed edge-front that the arbiter
    replaced, a recycled worker) is noted in VANISHED: its CPU time and
    context switches are lost from the figures."""
    before = {p: comm(p) for p in group.tree()}
    c0, t0 = snapshot(list(before))
    out = fn()
    pids = group.tree()
    c1, t1 = snapshot(pids)
    VANISHED.extend(f"{before[p] or '?'} (pid {p})" for p in before if p not in pids)
    return out, delta(c0, c1), delta(t0, t1) * 1e6 / os.sysconf("SC_CLK_TCK"), pids


def front_pid(logpath):
    """edge's front pid from its last `front ready pid=N` log line, or None."""
    try:
        pids = re.findall(r"front ready pid=(\d+)", logpath.read_text(errors="replace"))
    except OSError:
        return None
    return int(pids[-1]) if pids else None


def front_ticks(pid):
    """utime + stime of the front process (all its threads), in clock ticks."""
    if pid is None:
        return None
    _, ticks = snapshot([pid])
    return ticks.get(pid)


def wrk_figures(w, ctx, cpu_us):
    n = max(w["requests"], 1)
    secs = w["duration_us"] / 1e6
    return {
        "rps": w["requests"] / secs,
        "mibps": w["bytes"] / secs / 2**20,
        "p50_us": w["p50"], "p99_us": w["p99"], "p999_us": w["p999"],
        "status_err": w["status"],
        "sock_err": w["connect"] + w["read"] + w["write"] + w["timeout"],
        "requests": w["requests"],
        "ctx_per_req": ctx / n,
        "cpu_us_per_req": cpu_us / n,
        "cpu_util": cpu_us / max(w["duration_us"], 1),  # of one core
    }


def measure_server(arm, sc, args, rundir, edge_bin, tag):
    """One measured run (see _measure_server), plus the warnings that need
    the whole run: processes of the tree that exited while measured, and
    ERROR lines in edge's own log (a front that died and was restarted
    between the last snapshot and the stop shows up only there)."""
    VANISHED.clear()
    res = _measure_server(arm, sc, args, rundir, edge_bin, tag)
    if "error" in res:
        return res
    warn = [res["warning"]] if res.get("warning") else []
    if VANISHED:
        warn.append("exited during a measured run: " + ", ".join(VANISHED)
                    + " (its CPU and context switches are missing from the figures)")
    if arm in EDGE_ARMS:
        try:
            errs = [line.strip() for line in
                    (LOGS / f"{tag}.log").read_text(errors="replace").splitlines()
                    if " ERROR " in line]
        except OSError:
            errs = []
        if errs:
            warn.append(f"logged {len(errs)} ERROR line(s), first: "
                        f"`{errs[0][:160]}` (log: bench/out/logs/{tag}.log)")
    if warn:
        res["warning"] = "; ".join(warn)
    return res


def _measure_server(arm, sc, args, rundir, edge_bin, tag):
    port = free_port()
    group = Group(f"{sc['name']}/{arm}", LOGS / f"{tag}.log")
    tls = bool(sc.get("tls"))
    kind = sc.get("kind", "closed")
    try:
        launch(arm, sc, port, rundir, group, edge_bin)
        err = wait_ready(group, port, READY_TIMEOUT, tls=tls)
        if err:
            return {"error": err}
        try:
            status, body = http_get(port, sc["path"], timeout=10, tls=tls)
        except (OSError, http.client.HTTPException) as e:
            return {"error": f"GET {sc['path']}: {e}"}
        if status != 200 or not sc["check"](body):
            return {"error": f"GET {sc['path']} answered {status} "
                             f"{body[:60]!r} (expected 200 + the right body)"}
        if kind == "soak":  # its own load, samples and verdict
            res = run_soak(group, port, rundir, args, tag)
            res["load1"] = os.getloadavg()[0]
            why = group.dead()
            if why:
                res["warning"] = f"{why} during the run"
            return res
        pids = group.tree()
        idle_rss, idle_pss = memory(pids)
        front_rss = edge_front_rss(pids) if arm in EDGE_ARMS else None

        if kind == "rate":  # warm-up at the same rate, inside loadgen
            g, ctx, cpu_us, pids = measured(group, lambda: run_loadgen(
                port, sc["path"], sc["rate"], args.duration, args.warmup, WRK_LIVE))
            n = max(g["requests"], 1)
            res = {
                "rps": g["achieved_rps"], "rate": g["rate"], "requests": g["requests"],
                "p50_us": g["p50"], "p90_us": g["p90"], "p99_us": g["p99"],
                "p999_us": g["p999"], "max_us": g["max"],
                "svc_p50_us": g["svc_p50"], "svc_p99_us": g["svc_p99"],
                "svc_p999_us": g["svc_p999"],
                "max_send_lag_us": g["max_send_lag_us"],
                "status_err": g["status_err"],
                "sock_err": g["errors"] - g["status_err"] + g["unsent"],
                "retries": g["retries"], "reconnects": g["reconnects"],
                "ctx_per_req": ctx / n, "cpu_us_per_req": cpu_us / n,
            }
        else:
            run_wrk(port, sc["path"], args.warmup, args.connections, WRK_LIVE, tls)
            fpid = front_pid(group.logpath) if sc.get("front_cpu") and arm in EDGE_ARMS else None
            f0 = front_ticks(fpid)
            w, ctx, cpu_us, pids = measured(group, lambda: run_wrk(
                port, sc["path"], args.duration, args.connections, WRK_LIVE, tls))
            f1 = front_ticks(fpid)
            res = wrk_figures(w, ctx, cpu_us)
            if f0 is not None and f1 is not None:
                res["front_cpu_us_per_req"] = ((f1 - f0) * 1e6 / os.sysconf("SC_CLK_TCK")
                                               / max(w["requests"], 1))
        rss, pss = memory(pids)
        res.update({
            "rss_mib": rss, "pss_mib": pss,
            "idle_rss_mib": idle_rss, "idle_pss_mib": idle_pss,
            "procs": len(pids),
        })
        if front_rss is not None:
            res["front_idle_rss_mib"] = front_rss

        if kind == "slow":  # the same server, now under attack
            bound = 10 + ATTACK_SETTLE + args.duration + 20
            atk = Attacker(port, bound, LOGS / f"{tag}-attacker.log")
            try:
                opened = atk.wait_ready(10)
                time.sleep(ATTACK_SETTLE)
                w, ctx, cpu_us, pids = measured(group, lambda: run_wrk(
                    port, sc["path"], args.duration, args.connections, WRK_LIVE))
                arss, apss = memory(pids)
            finally:
                stats = atk.stop()
            a = wrk_figures(w, ctx, cpu_us)
            a.update({"rss_mib": arss, "pss_mib": apss, "ready_conns": opened,
                      "attacker": stats})
            res["attack"] = a
            res["ratio"] = a["rps"] / res["rps"] if res["rps"] else 0.0
            if not stats or stats["open_mean"] < 0.9 * ATTACK_CONNS:
                held = stats["open_mean"] if stats else "?"
                res["attack_warning"] = (f"the attacker held only {held} of its "
                                         f"{ATTACK_CONNS} connections open on average "
                                         "(see its log)")

        res["load1"] = os.getloadavg()[0]
        why = group.dead()
        if why or res.get("attack_warning"):
            res["warning"] = "; ".join(x for x in (why and f"{why} during the run",
                                                   res.pop("attack_warning", None)) if x)
        return res
    except RuntimeError as e:  # a load generator failed
        return {"error": str(e)}
    finally:
        group.stop()


def measure_inproc(sc, args, tag):
    asgi = ["--asgi"] if sc.get("interface") == "asgi" else []
    argv = ["taskset", "-c", common.SERVER_CPU, VENV / "bin" / "python",
            BENCH / "inproc.py", *asgi, sc["module"], sc["path"], str(args.duration)]
    p = subprocess.run([str(a) for a in argv], cwd=APPS, env=venv_env(),
                       capture_output=True, text=True,
                       timeout=args.duration + 60)
    (LOGS / f"{tag}.log").write_text(p.stdout + p.stderr)
    if p.returncode != 0:
        return {"error": f"inproc.py failed: {(p.stdout + p.stderr).strip()[-300:]}"}
    r = json.loads(p.stdout.strip().splitlines()[-1])
    res = {"rps": r["rps"], "ctx_per_req": r["ctx"] / r["calls"],
           "cpu_us_per_req": r["cpu_s"] * 1e6 / r["calls"]}
    if "loop" in r:  # ASGI: the event loop the calls ran in
        res["loop"] = r["loop"]
    return res


def fixed_rate(args, results, unavailable, rundir, edge_bin):
    """The rate of the `latency` scenario: (req/s, how it was chosen, caps).

    RATE_FRACTION of the slowest peer's closed-loop hello-world capacity:
    from this run's hello-1w if it measured that peer, otherwise probed now
    (one closed-loop wrk run per peer, same pinning). Peers are probed even
    when --arms leaves them out, so the rate stays comparable between runs."""
    if args.rate:
        return args.rate, f"Rate: {args.rate:,.0f} req/s, from --rate.", {}
    hello_sc = next(s for s in SCENARIOS if s["name"] == "hello-1w")
    hello = results.get("hello-1w", {})
    caps = {}
    pa = argparse.Namespace(**vars(args))
    pa.duration = min(args.duration, 5)
    pa.warmup = 1
    for peer in RATE_PEERS:
        if peer in unavailable:
            continue
        if hello.get(peer):
            caps[peer] = (med(hello[peer], "rps"), "hello-1w of this run")
            continue
        slug = re.sub(r"[^a-z0-9]+", "-", peer.lower())
        r = measure_server(peer, hello_sc, pa, rundir, edge_bin, f"latency-capacity-{slug}")
        if "error" in r:
            log(f"  capacity of {peer}: FAILED: {r['error']}")
            continue
        caps[peer] = (r["rps"], f"probed: {pa.duration} s closed-loop wrk")
        log(f"  capacity of {peer:<18} {fmt_rps(r['rps']):>9} req/s (probe)")
    if not caps:
        return None, "no peer could be measured to choose the rate (use --rate)", {}
    slowest = min(caps, key=lambda a: caps[a][0])
    rate = max(1.0, round(RATE_FRACTION * caps[slowest][0]))
    how = (f"Rate: {rate:,.0f} req/s = {RATE_FRACTION:.0%} of the slowest peer's "
           f"closed-loop capacity, {slowest} {fmt_rps(caps[slowest][0])} req/s "
           f"({caps[slowest][1]}); peers: "
           + ", ".join(f"{a} {fmt_rps(c)}" for a, (c, _) in caps.items()) + ".")
    return rate, how, {a: c for a, (c, _) in caps.items()}
