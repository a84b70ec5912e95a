"""The report: one Markdown table per scenario (closed loop, slow client,
fixed rate), the goal lines under them, and the files written at the end
(bench/out/latest.md and latest.json)."""

import json
import statistics
import sys

from . import common
from .common import NOTES, OUT, REPO, WRK_TIMEOUT, log
from .scenarios import (ASGI_MAX_CONCURRENCY, ASGI_STACK, ATTACK_BODIES,
                        ATTACK_CONNS, ATTACK_SETTLE, EDGE_OBS, EDGE_PIP, EDGE_RL,
                        GRANIAN, GUNI, GUNI_TLS, GUNI_UVI, NGINX, RATE_CONNS,
                        RL_GOAL, UVICORN)
from .setup import machine, versions
from .soak import table_soak

def fmt_rps(x):
    return f"{x:,.0f}"


def fmt_ms(us):
    ms = us / 1000.0
    if ms < 10:
        return f"{ms:.2f}"
    if ms < 100:
        return f"{ms:.1f}"
    return f"{ms:.0f}"


def med(runs, key):
    vals = [r[key] for r in runs if key in r]
    return statistics.median(vals) if vals else None


def table(sc, arms, results, skipped, args):
    if sc.get("kind") == "slow":
        return table_slow(sc, arms, results, skipped, args)
    if sc.get("kind") == "rate":
        return table_rate(sc, arms, results, skipped, args)
    if sc.get("kind") == "soak":
        return table_soak(sc, arms, results, skipped, args, table_head, finish_table)
    static = sc.get("static")
    bases = sc["baselines"]
    if (EDGE_OBS in arms or EDGE_PIP in arms) and "edge" in arms:
        bases = bases + ["edge"]
    head = ["arm", "req/s (median)", "min–max"]
    if static:
        head.append("MiB/s")
    head += [f"vs {b}" for b in bases]
    head += ["p50 ms", "p99 ms", "errors", "RSS MiB", "PSS MiB",
             "ctx-sw/req", "CPU µs/req"]
    lines = table_head(sc, head)
    base_rps = {b: med(results.get(b, []), "rps") for b in bases}
    for arm in arms:
        runs = results.get(arm, [])
        if not runs:
            reason = skipped.get(arm, "not run")
            lines.append(f"| {arm} | skipped: {reason} |" + " — |" * (len(head) - 2))
            continue
        rps = [r["rps"] for r in runs]
        m = statistics.median(rps)
        row = [arm + ("" if len(runs) == args.rounds else f" ({len(runs)}/{args.rounds} rounds)"),
               fmt_rps(m), f"{fmt_rps(min(rps))}–{fmt_rps(max(rps))}"]
        if static:
            row.append(f"{med(runs, 'mibps'):,.0f}" if med(runs, "mibps") is not None else "—")
        for b in bases:
            row.append(f"{m / base_rps[b]:.2f}×" if base_rps[b] else "—")
        if "p50_us" in runs[0]:
            st = sum(r["status_err"] for r in runs)
            so = sum(r["sock_err"] for r in runs)
            err = "0" if st + so == 0 else f"{st + so} ({st} non-2xx, {so} socket)"
            row += [fmt_ms(med(runs, "p50_us")), fmt_ms(med(runs, "p99_us")), err,
                    f"{med(runs, 'rss_mib'):.1f}", f"{med(runs, 'pss_mib'):.1f}"]
        else:  # in-process: no server, no socket
            row += ["—", "—", "—", "—", "—"]
        row += [f"{med(runs, 'ctx_per_req'):.3f}", f"{med(runs, 'cpu_us_per_req'):.1f}"]
        lines.append("| " + " | ".join(row) + " |")
    extra = asgi_lines(sc, arms, results) if sc.get("interface") == "asgi" else []
    if sc.get("front_cpu"):
        extra += rate_limit_lines(sc, arms, results)
    return finish_table(lines, sc, arms, results, skipped, extra)


def rate_limit_lines(sc, arms, results):
    """Under a rate-limit table: the front's own CPU per request (its pid
    from edge's `front ready pid=` log line) and issue 16's goal."""
    out = []
    front = {a: med(results.get(a, []), "front_cpu_us_per_req") for a in arms}
    have = {a: v for a, v in front.items() if v is not None}
    if have:
        out.append("edge's front process alone (`/proc/<front pid>/stat`), CPU µs/req: "
                   + ", ".join(f"{a} {v:.1f}" for a, v in have.items())
                   + (f" ({have[EDGE_RL] - have['edge']:+.1f} µs with the rule)"
                      if EDGE_RL in have and "edge" in have else "") + ".")
    base, rl = med(results.get("edge", []), "rps"), med(results.get(EDGE_RL, []), "rps")
    if base and rl:
        ratio = rl / base
        out.append(f"issue 16's goal: {EDGE_RL} / edge ≥ {RL_GOAL:.2f}: {ratio:.3f} — "
                   + ("met" if ratio >= RL_GOAL else "NOT met") + ".")
    return out


def asgi_lines(sc, arms, results):
    """Under an ASGI table: what each peer ran on, and issue 9's goal."""
    out = []
    stack = f"--http {ASGI_STACK['http']} --loop {ASGI_STACK['loop']}"
    peers = []
    if GUNI_UVI in arms:
        peers.append(f"{GUNI_UVI}: `gunicorn -k {ASGI_STACK['worker']}` (its \"auto\" "
                     f"= {ASGI_STACK['http']} + {ASGI_STACK['loop']}) behind nginx over a Unix socket")
    if UVICORN in arms:
        peers.append(f"uvicorn: `uvicorn {stack} --no-access-log`")
    if GRANIAN in arms:
        peers.append(f"granian: `granian --interface asgi --loop {ASGI_STACK['loop']}`")
    if "edge" in arms:
        peers.append(f"edge: `[app] interface = \"asgi\"`, `lifespan = \"auto\"`, "
                     f"`max_concurrency = {ASGI_MAX_CONCURRENCY}`, "
                     f"`loop = \"{ASGI_STACK['loop']}\"`")
    loops = {r.get("loop") for r in results.get("in-process", [])} - {None}
    if loops:
        peers.append(f"in-process: the app awaited in a loop on {', '.join(sorted(loops))}")
    w = sc["workers"]
    if peers:
        out.append(f"ASGI servers, {w} worker{'s' if w > 1 else ''} each: "
                   + "; ".join(peers) + ".")
    rps = {a: med(results[a], "rps") for a in arms
           if results.get(a) and a != "in-process"}
    if "edge" in rps and len(rps) > 1:
        others = {a: v for a, v in rps.items() if a != "edge"}
        best = max(others, key=others.get)
        ok = rps["edge"] > others[best]
        out.append(f"Goal (issue 9): edge ahead of every other ASGI server: edge "
                   f"{fmt_rps(rps['edge'])} req/s vs best other ({best}) "
                   f"{fmt_rps(others[best])} ({rps['edge'] / others[best]:.2f}×) — "
                   f"{'met' if ok else 'NOT met'}.")
    return out


def fmt_lat(us):
    """Latency in ms, with µs resolution below 1 ms (fixed-rate runs)."""
    return f"{us / 1000.0:.3f}" if us < 1000 else fmt_ms(us)


def rounds_label(arm, runs, args):
    return arm + ("" if len(runs) == args.rounds else f" ({len(runs)}/{args.rounds} rounds)")


def errors_cell(runs, key=None):
    rs = [r[key] if key else r for r in runs]
    st = sum(r["status_err"] for r in rs)
    so = sum(r["sock_err"] for r in rs)
    return "0" if st + so == 0 else f"{st + so} ({st} non-2xx, {so} socket)"


def table_head(sc, head):
    verb = "GET https://…" if sc.get("tls") else "GET "
    return [f"### {sc['name']} — {sc['title']} ({verb}{sc['path']})", "",
            "| " + " | ".join(head) + " |",
            "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]


def skipped_row(arm, skipped, head):
    return f"| {arm} | skipped: {skipped.get(arm, 'not run')} |" + " — |" * (len(head) - 2)


def table_slow(sc, arms, results, skipped, args):
    head = ["arm", "unloaded req/s", "under attack req/s", "attack / unloaded",
            "min–max (ratio)", "p99 ms unloaded", "p99 ms attack", "answered (attack)",
            "errors (attack)",
            "attack conns open", "re-opened", "attacker CPU", "server CPU unl. → attack",
            "CPU µs/req unl. → attack", "RSS MiB attack"]
    lines = table_head(sc, head)
    for arm in arms:
        runs = results.get(arm, [])
        if not runs:
            lines.append(skipped_row(arm, skipped, head))
            continue
        ratios = [r["ratio"] for r in runs]
        att = [r["attack"] for r in runs]
        opened = [a["attacker"]["open_mean"] for a in att if a.get("attacker")]
        reopened = [a["attacker"]["opened"] - ATTACK_CONNS for a in att if a.get("attacker")]
        acpu = [a["attacker"]["cpu_s"] / a["attacker"]["seconds"]
                for a in att if a.get("attacker") and "cpu_s" in a["attacker"]]
        row = [rounds_label(arm, runs, args),
               fmt_rps(med(runs, "rps")), fmt_rps(med(att, "rps")),
               f"**{statistics.median(ratios):.2f}×**",
               f"{min(ratios):.2f}–{max(ratios):.2f}",
               fmt_ms(med(runs, "p99_us")),
               fmt_ms(med(att, "p99_us")) if med(att, "requests") else "—",
               f"{sum(a['requests'] for a in att):,}",
               errors_cell(att),
               f"{statistics.median(opened):.0f} / {ATTACK_CONNS}" if opened else "?",
               f"{statistics.median(reopened):.0f}" if reopened else "?",
               f"{statistics.median(acpu):.0%}" if acpu else "?",
               f"{med(runs, 'cpu_util'):.0%} → {med(att, 'cpu_util'):.0%}",
               f"{med(runs, 'cpu_us_per_req'):.1f} → "
               + (f"{med(att, 'cpu_us_per_req'):.1f}" if med(att, "requests") else "—"),
               f"{med(att, 'rss_mib'):.1f}"]
        lines.append("| " + " | ".join(row) + " |")
    extra = [f"Attack: bench/slowloris.py with {ATTACK_CONNS} connections "
             f"({ATTACK_CONNS - ATTACK_BODIES} request heads and {ATTACK_BODIES} "
             "POST bodies, one byte per second each), pinned to the load CPU "
             f"next to wrk, started {ATTACK_SETTLE:.0f} s after all its connections "
             "were open and stopped after the run; a connection the server closes "
             "is re-opened at once (at most once a second per slot). \"attack conns open\" is the attacker's "
             "mean over the run (what the server was holding); \"re-opened\" "
             "counts attack connections the server closed or answered (head "
             "timeouts, error answers, or a 200 from a server that answers "
             "without reading the slow body) and that the attacker opened again. "
             "\"answered\" is wrk's total under attack; a server that answers "
             "nothing has no p99, and its stuck requests count as (timeout) errors "
             "only once wrk's 5 s timeout expires within the run. Each round measures the same server unloaded, "
             "then under attack. \"attacker CPU\" is its share of the load "
             "CPU, which it shares with wrk; \"server CPU\" is the server tree's "
             "CPU time over the run (100% = its core saturated): a server under "
             "100% under attack was not the limit. `nginx return 200` is the "
             "control: it holds 500 idle connections at no cost, so its ratio is "
             "the harness's own ceiling (wrk losing CPU to the attacker)."]
    if results.get("edge"):
        r = statistics.median(x["ratio"] for x in results["edge"])
        extra.append(f"Goal (issue 5): edge under attack ≥ 0.9× its own unloaded "
                     f"throughput: {r:.2f}× — {'met' if r >= 0.9 else 'NOT met'}.")
    return finish_table(lines, sc, arms, results, skipped, extra)


def table_rate(sc, arms, results, skipped, args):
    bases = sc["baselines"]
    head = ["arm", "target req/s", "achieved req/s", "p50 ms", "p90 ms", "p99 ms",
            "p99.9 ms", "max ms"] + [f"p99 vs {b}" for b in bases] + [
            "p99 from send ms", "errors", "RSS MiB", "ctx-sw/req", "CPU µs/req"]
    lines = table_head(sc, head)
    base_p99 = {b: med(results.get(b, []), "p99_us") for b in bases}
    for arm in arms:
        runs = results.get(arm, [])
        if not runs:
            lines.append(skipped_row(arm, skipped, head))
            continue
        p99 = med(runs, "p99_us")
        row = [rounds_label(arm, runs, args), fmt_rps(med(runs, "rate")),
               fmt_rps(med(runs, "rps"))]
        row += [fmt_lat(med(runs, k)) for k in ("p50_us", "p90_us", "p99_us", "p999_us", "max_us")]
        row += [f"{p99 / base_p99[b]:.2f}×" if base_p99[b] else "—" for b in bases]
        row += [fmt_lat(med(runs, "svc_p99_us")), errors_cell(runs),
                f"{med(runs, 'rss_mib'):.1f}", f"{med(runs, 'ctx_per_req'):.3f}",
                f"{med(runs, 'cpu_us_per_req'):.1f}"]
        lines.append("| " + " | ".join(row) + " |")
    extra = []
    if sc.get("rate_note"):
        extra.append(sc["rate_note"])
    extra.append(f"Open loop (bench/loadgen.c, {RATE_CONNS} keep-alive connections, "
                 "pinned to the load CPU): request i is due at i/rate whatever "
                 "happened before, and its latency counts from that due time "
                 "(wrk2's correction for coordinated omission); \"p99 from send\" "
                 "counts from the actual send instead. The lower the \"p99 vs\" "
                 "ratio, the better.")
    p99s = {a: med(results[a], "p99_us") for a in arms if results.get(a)}
    if "edge" in p99s and len(p99s) > 1:
        others = {a: v for a, v in p99s.items() if a != "edge"}
        best = min(others, key=others.get)
        ok = p99s["edge"] <= others[best]
        extra.append(f"Goal (issue 7): p99 at the fixed rate lowest of all: edge "
                     f"{fmt_lat(p99s['edge'])} ms vs best other ({best}) "
                     f"{fmt_lat(others[best])} ms — {'met' if ok else 'NOT met'}.")
    return finish_table(lines, sc, arms, results, skipped, extra)


MEM_PEERS = [GUNI, GUNI_TLS, GUNI_UVI, NGINX]  # what edge's tree is compared with


def memory_lines(sc, arms, results):
    """The issue's memory goals, spelled out for this scenario."""
    out = []
    idle = [(a, med(results[a], "idle_rss_mib"), med(results[a], "idle_pss_mib"))
            for a in arms if results.get(a) and "idle_rss_mib" in results[a][0]]
    if not idle:
        return out
    out.append("Memory, idle (before load), whole tree RSS / PSS MiB: "
               + ", ".join(f"{a} {r:.1f} / {p:.1f}" for a, r, p in idle) + ".")
    edge = results.get("edge")
    if not edge:
        return out
    front = med(edge, "front_idle_rss_mib")
    if front is not None:
        out.append(f"edge front process (`edge-front`) idle RSS: {front:.1f} MiB "
                   f"(goal ≤ 15 MiB: {'met' if front <= 15 else 'NOT met'}).")
    peer = next((a for a in MEM_PEERS if a in arms and results.get(a)), None)
    if peer:
        er, ep = med(edge, "idle_rss_mib"), med(edge, "idle_pss_mib")
        pr, pp = med(results[peer], "idle_rss_mib"), med(results[peer], "idle_pss_mib")
        w = sc["workers"]
        line = (f"edge tree vs {peer} tree, idle, {w} worker{'s' if w > 1 else ''} each: "
                f"RSS {er:.1f} vs {pr:.1f} MiB ({er / pr:.2f}×), "
                f"PSS {ep:.1f} vs {pp:.1f} MiB ({ep / pp:.2f}×)")
        if w == 2 and peer == GUNI:
            ok = er < pr and ep < pp
            line += f" — goal (below gunicorn 2 workers + nginx): {'met' if ok else 'NOT met'}"
        out.append(line + ".")
    return out


def finish_table(lines, sc, arms, results, skipped, extra=None):
    extra = list(extra or [])
    extra += memory_lines(sc, arms, results)
    for arm in arms:
        for r in results.get(arm, []):
            if r.get("warning"):
                extra.append(f"{arm}: {r['warning']}.")
        if arm in skipped and results.get(arm):
            extra.append(f"{arm}: some rounds failed: {skipped[arm]}.")
    loads = [r["load1"] for a in arms for r in results.get(a, []) if "load1" in r]
    if loads and max(loads) > 2.5:  # server + wrk alone make ~2
        extra.append(f"1-min load average after runs up to {max(loads):.1f}: "
                     "other work shared the CPUs; treat these numbers as noisy.")
    if extra:
        lines += [""] + ["- " + e for e in extra]
    return "\n".join(lines) + "\n"


def write_report(started, args, scenarios, arm_filter, results, skipped, rates, edge_bin):
    """The Markdown report (stdout and bench/out/latest.md) and everything
    measured (bench/out/latest.json)."""
    v = versions(edge_bin)
    md = [f"# edge bench — {started:%Y-%m-%d %H:%M %Z}", "",
          f"- machine: {machine()}"]
    if common.MULTI:  # --server-cpus / --load-cpus
        ns, nl = common.NGINX_WORKERS, common.WRK_THREADS
        md.append(f"- servers pinned to CPUs {common.SERVER_CPU} ({ns} CPU{'s' if ns > 1 else ''}; "
                  f"`taskset`, whole process tree; edge's front sizes itself to them, "
                  f"nginx `worker_processes {ns}`), wrk on CPUs {common.LOAD_CPU} "
                  f"({nl} CPU{'s' if nl > 1 else ''}): `wrk -t{nl} -c{args.connections} "
                  f"-d{args.duration}s --timeout {WRK_TIMEOUT}`, {args.warmup}s warm-up per run")
    else:
        md.append(f"- server pinned to CPU {common.SERVER_CPU} (`taskset`, whole process tree), "
                  f"wrk on CPU {common.LOAD_CPU}: `wrk -t{common.WRK_THREADS} -c{args.connections} -d{args.duration}s "
                  f"--timeout {WRK_TIMEOUT}`, {args.warmup}s warm-up per run")
    if getattr(args, "workers", None):
        md.append(f"- Python workers per arm: {args.workers} (`--workers`: edge `workers`, "
                  "gunicorn `-w`, granian / uvicorn `--workers`, uwsgi `--processes`; "
                  "static and proxy scenarios: the largest count)")
    md += [
          f"- {args.rounds} round(s), arms interleaved; every server restarted for every run",
          "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
          f"- command: `bench/run {' '.join(sys.argv[1:])}`".replace("`bench/run `", "`bench/run`"),
          ""]
    if NOTES:
        md += ["Notes:", ""] + [f"- {n}" for n in NOTES] + [""]
    for sc in scenarios:
        arms = [a for a in sc["arms"] if not arm_filter or a in arm_filter]
        md.append(table(sc, arms, results[sc["name"]], skipped[sc["name"]], args))
    text = "\n".join(md)
    OUT.mkdir(exist_ok=True)
    (OUT / "latest.md").write_text(text)
    (OUT / "latest.json").write_text(json.dumps(
        {"started": started.isoformat(), "args": vars(args), "versions": v,
         "notes": NOTES, "results": results, "skipped": skipped, "rates": rates,
         "cpus": {"server": common.SERVER_CPU, "load": common.LOAD_CPU,
                  "wrk_threads": common.WRK_THREADS, "connections": args.connections,
                  "nginx_workers": common.NGINX_WORKERS},
         "scenarios": [{"name": sc["name"], "title": sc["title"], "workers": sc["workers"],
                        "static": bool(sc.get("static"))} for sc in scenarios],
         "machine": machine()},
        indent=1))
    print(text)
    log(f"written: {(OUT / 'latest.md').relative_to(REPO)}, {(OUT / 'latest.json').relative_to(REPO)}")
