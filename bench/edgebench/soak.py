"""The soak scenario (issue 19): bench/soakgen.py's mixed traffic against one
edge for a long run, while every edge process's RSS and open descriptors
and the files in edge's dedicated limits.temp_dir are sampled; then the
verdict (flat memory after the warm-up, no leaked descriptor, no leftover
temp file, no error) and its table."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import common
from .common import BENCH, FILES, LOGS
from .procs import WRK_LIVE, _status_kb, comm
from .scenarios import SOAK_CONNS, SOAK_RSS_TOLERANCE, SOAK_SAMPLE, SOAK_WARMUP

SOAKGEN = BENCH / "soakgen.py"
SETTLE_S = 3.0  # after the load: connections closed, spools removed


def _fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def _fd_targets(pid):
    """What each descriptor points to (socket:[inode], a path, anon_inode:…)."""
    out = []
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
            except OSError:
                pass
    except OSError:
        pass
    return out


def _files(d):
    return sum(len(fs) for _, _, fs in os.walk(d))


def sample(group, tmpdir, t0, targets=False):
    """RSS and descriptor count of every edge process, files in temp_dir;
    with targets, also what the descriptors point to (idle and final)."""
    procs = {}
    spools = 0
    for p in group.tree():
        name = comm(p)
        if not name.startswith("edge"):
            continue  # taskset before exec, nothing else is in edge's tree
        tg = _fd_targets(p)
        procs[p] = {"comm": name, "rss_kib": _status_kb(f"/proc/{p}/status", "VmRSS:"),
                    "fds": _fds(p)}
        spools += sum(t.startswith(f"{tmpdir}/") for t in tg)
        if targets:
            procs[p]["targets"] = tg
    # edge spools to unlinked files: they show as descriptors into temp_dir
    # ("… (deleted)"), not as directory entries.
    return {"t": time.time() - t0, "procs": procs, "temp_files": _files(tmpdir),
            "spool_fds": spools}


def run_soak(group, port, rundir, args, tag):
    """The load and the samples; returns the run's result (figures, samples,
    verdict and the reasons of a failure)."""
    tmpdir = rundir / "soak-tmp"
    n = args.soak_requests
    bound = n / 300 + 120  # soakgen does a few thousand a second; 300 is far below
    argv = ["taskset", "-c", common.LOAD_CPU, sys.executable, SOAKGEN,
            "--port", port, "--requests", n, "--conns", SOAK_CONNS,
            "--max-seconds", f"{bound:.0f}"]
    t0 = time.time()
    idle = sample(group, tmpdir, t0, targets=True)
    samples = []
    genlog = open(LOGS / f"{tag}-soakgen.log", "w")
    p = subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE,
                         stderr=genlog, text=True, start_new_session=True)
    WRK_LIVE.append(p)
    try:
        while True:
            try:
                out, _ = p.communicate(timeout=SOAK_SAMPLE)
                break
            except subprocess.TimeoutExpired:
                samples.append(sample(group, tmpdir, t0))
                if time.time() - t0 > bound + 30:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
                    raise RuntimeError(f"soakgen did not finish in {bound + 30:.0f}s")
    except BaseException:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        raise
    finally:
        WRK_LIVE.remove(p)
        genlog.close()
    load_s = time.time() - t0
    m = re.search(r"^BENCHJSON (.*)$", out, re.M)
    if not m:
        raise RuntimeError(f"soakgen output not understood (log: bench/out/logs/{tag}-soakgen.log)")
    gen = json.loads(m.group(1))
    time.sleep(SETTLE_S)
    final = sample(group, tmpdir, t0, targets=True)
    return verdict(gen, idle, samples, final, load_s)


def verdict(gen, idle, samples, final, load_s):
    fails = []
    if gen["errors"] or gen["unsent"]:
        fails.append(f"{gen['errors']} load errors, {gen['unsent']} requests not sent"
                     + (f" (first: {gen['first_errors'][0]})" if gen["first_errors"] else ""))
    warm_t = SOAK_WARMUP * load_s
    after = [s for s in samples if s["t"] >= warm_t]
    rows = []
    for pid, st in sorted(idle["procs"].items(), key=lambda kv: kv[1]["comm"]):
        series = [s["procs"][pid]["rss_kib"] for s in after if pid in s["procs"]]
        fds = [s["procs"][pid]["fds"] for s in samples if pid in s["procs"]]
        end = final["procs"].get(pid)
        row = {"pid": pid, "comm": st["comm"], "idle_rss_kib": st["rss_kib"],
               "idle_fds": st["fds"], "max_fds": max(fds, default=None),
               "end_fds": end["fds"] if end else None,
               "end_rss_kib": end["rss_kib"] if end else None}
        if series:
            row.update(warm_rss_kib=series[0], last_rss_kib=series[-1],
                       max_rss_kib=max(series),
                       growth=(series[-1] - series[0]) / max(series[0], 1))
            if row["growth"] > SOAK_RSS_TOLERANCE:
                fails.append(f"{st['comm']} (pid {pid}) RSS grew {row['growth']:.1%} after the warm-up")
        if end is None:
            fails.append(f"{st['comm']} (pid {pid}) exited during the soak")
        else:
            extra = list(end["targets"])
            for t in st["targets"]:
                if t in extra:
                    extra.remove(t)
            # The static route's open_file_cache keeps one descriptor per
            # large file it served (bounded, and dropped only when an insert
            # needs room, not when the entry expires): not a leak. A second
            # descriptor on the same file would be.
            cached = {t for t in extra if t.startswith(f"{FILES}/") and extra.count(t) == 1}
            extra = [t for t in extra if t not in cached]
            row["cached_fds"] = sorted(cached)
            if extra:
                fails.append(f"{st['comm']} (pid {pid}) holds {end['fds']} descriptors after the "
                             f"load, {st['fds']} before (new: {', '.join(sorted(extra)[:5])})")
        rows.append(row)
    new = sorted(set(final["procs"]) - set(idle["procs"]))
    if new:
        fails.append("new edge processes during the soak: "
                     + ", ".join(f"{final['procs'][p]['comm']} (pid {p})" for p in new))
    if final["temp_files"]:
        fails.append(f"{final['temp_files']} file(s) left in limits.temp_dir")
    if final["spool_fds"]:
        fails.append(f"{final['spool_fds']} spool file(s) in limits.temp_dir still open")
    return {
        "rps": gen["requests"] / max(gen["elapsed_s"], 1e-9),
        "requests": gen["requests"], "gen": gen, "load_s": load_s,
        "samples": len(samples), "warmup_s": warm_t,
        "max_temp_files": max((s["temp_files"] for s in samples), default=0),
        "end_temp_files": final["temp_files"],
        "max_spool_fds": max((s["spool_fds"] for s in samples), default=0),
        "end_spool_fds": final["spool_fds"],
        "procs": rows, "fails": fails,
        "series": [{"t": round(s["t"], 1), "temp_files": s["temp_files"],
                    "spool_fds": s["spool_fds"],
                    "rss_kib": {str(p): v["rss_kib"] for p, v in s["procs"].items()},
                    "fds": {str(p): v["fds"] for p, v in s["procs"].items()}}
                   for s in samples],
    }


def table_soak(sc, arms, results, skipped, args, head_fn, finish):
    """One row per edge process; the verdict and the traffic below."""
    head = ["process", "RSS MiB idle", "after warm-up", "end of load", "max", "growth",
            "fds idle", "max", "after load"]
    lines = head_fn(sc, head)
    extra = []
    for arm in arms:
        for r in results.get(arm, []):
            for p in r["procs"]:
                mib = lambda k: f"{p[k] / 1024:.1f}" if p.get(k) is not None else "—"  # noqa: E731
                g = f"{p['growth']:+.1%}" if "growth" in p else "—"
                lines.append(f"| {p['comm']} (pid {p['pid']}) | {mib('idle_rss_kib')} | "
                             f"{mib('warm_rss_kib')} | {mib('last_rss_kib')} | {mib('max_rss_kib')} | "
                             f"{g} | {p['idle_fds']} | {p['max_fds']} | {p['end_fds']} |")
            gen = r["gen"]
            fails = list(r["fails"])
            if r.get("warning"):
                fails.append(r["warning"])
            extra.append(f"{arm}: {gen['requests']:,} requests in {gen['elapsed_s']:.0f} s "
                         f"({r['rps']:,.0f}/s, {SOAK_CONNS} clients, "
                         f"{gen['connections_opened']:,} connections opened), "
                         f"{gen['errors']} errors; mix: "
                         + ", ".join(f"{k} {v:,}" for k, v in gen["counts"].items()) + ".")
            cached = sorted({Path(t).name for p in r["procs"] for t in p.get("cached_fds", [])})
            if cached:
                extra.append(f"{arm}: descriptors still open after the load on static files "
                             f"({', '.join(cached)}): the [[static]] route's open_file_cache "
                             "(one per file, bounded; an expired entry keeps its descriptor "
                             "until an insert needs room), not counted as leaks.")
            extra.append(f"{arm}: {r['samples']} samples every {SOAK_SAMPLE:g} s; warm-up = "
                         f"the first {SOAK_WARMUP:.0%} of the load ({r['warmup_s']:.0f} s); "
                         f"limits.temp_dir: up to {r['max_spool_fds']} open spool files "
                         f"(unlinked) and {r['max_temp_files']} directory entries in a sample "
                         f"during the load, {r['end_spool_fds']} and {r['end_temp_files']} "
                         "after it.")
            verdict_ = "PASS" if not fails else "FAIL: " + "; ".join(fails)
            extra.append(f"{arm}: issue 19's soak goal (RSS flat within "
                         f"{SOAK_RSS_TOLERANCE:.0%} after the warm-up, no leaked descriptor, "
                         f"no leftover temp file, no error): **{verdict_}**.")
        if arm in skipped and not results.get(arm):
            lines.append(f"| {arm} | skipped: {skipped[arm]} |" + " — |" * (len(head) - 2))
    return finish(lines, sc, [], results, skipped, extra)
