"""The server side of a run: /proc accounting of a process tree, and
`Group`, the process group of one arm (started, measured, stopped), plus the
clean-up of everything still running at exit."""

import os
import signal
import subprocess
import time
from pathlib import Path

from .common import log

def _stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    return data[data.rindex(")") + 2:].split()


def _all_procs():
    procs = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                f = _stat_fields(name)
                procs[int(name)] = (int(f[1]), int(f[2]))  # ppid, pgrp
            except (OSError, ValueError, IndexError):
                pass
    return procs


def _status_kb(path, key):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def snapshot(pids):
    """Per-thread context switches and per-process CPU ticks for pids."""
    ctx = {}
    ticks = {}
    for pid in pids:
        try:
            f = _stat_fields(pid)
            ticks[pid] = int(f[11]) + int(f[12])  # utime + stime, all threads
            for tid in os.listdir(f"/proc/{pid}/task"):
                v = n = 0
                with open(f"/proc/{pid}/task/{tid}/status") as fh:
                    for line in fh:
                        if line.startswith("voluntary_ctxt_switches"):
                            v = int(line.split()[1])
                        elif line.startswith("nonvoluntary_ctxt_switches"):
                            n = int(line.split()[1])
                ctx[(pid, int(tid))] = v + n
        except (OSError, ValueError, IndexError):
            pass
    return ctx, ticks


def delta(before, after):
    return sum(v - before.get(k, 0) for k, v in after.items())


def memory(pids):
    rss = sum(_status_kb(f"/proc/{p}/status", "VmRSS:") for p in pids)
    pss = sum(_status_kb(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids)
    return rss / 1024.0, pss / 1024.0


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def edge_front_rss(pids):
    """VmRSS (MiB) of edge's front process (named `edge-front` by edge), or None."""
    for p in pids:
        if comm(p) == "edge-front":
            return _status_kb(f"/proc/{p}/status", "VmRSS:") / 1024.0
    return None


LIVE_GROUPS = []
WRK_LIVE = []


class Group:
    def __init__(self, name, logpath):
        self.name = name
        self.logpath = logpath
        self.log = open(logpath, "wb")
        self.procs = []
        self.pgid = None

    def spawn(self, argv, cwd=None, env=None):
        self.log.write(("$ " + " ".join(map(str, argv)) + "\n").encode())
        self.log.flush()
        # All our processes share one new process group (in our session, so
        # setpgid works; not the terminal's foreground group, so a Ctrl-C
        # reaches only us and we stop them in order).
        if self.pgid is None:
            kw = dict(preexec_fn=os.setpgrp)
        else:
            pgid = self.pgid
            kw = dict(preexec_fn=lambda: os.setpgid(0, pgid))
        p = subprocess.Popen([str(a) for a in argv], cwd=cwd, env=env,
                             stdin=subprocess.DEVNULL, stdout=self.log,
                             stderr=subprocess.STDOUT, **kw)
        if self.pgid is None:
            self.pgid = p.pid
            LIVE_GROUPS.append(self)
        self.procs.append(p)
        return p

    def dead(self):
        for p in self.procs:
            rc = p.poll()
            if rc is not None:
                cmd = p.args[3] if p.args[0] == "taskset" else p.args[0]
                return f"{Path(cmd).name} exited with code {rc}"
        return None

    def tree(self):
        procs = _all_procs()
        roots = {p.pid for p in self.procs if p.poll() is None}
        found = {pid for pid, (_, pg) in procs.items() if pg == self.pgid}
        found |= roots
        children = {}
        for pid, (ppid, _) in procs.items():
            children.setdefault(ppid, []).append(pid)
        stack = list(roots)
        while stack:
            for c in children.get(stack.pop(), []):
                if c not in found:
                    found.add(c)
                    stack.append(c)
        return sorted(found)

    def stop(self):
        if self.pgid is None:
            return
        for p in reversed(self.procs):  # front first (nginx), then app server
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.time() + 10
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                pass
        try:  # whatever is left in our own process group
            os.killpg(self.pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if self in LIVE_GROUPS:
            LIVE_GROUPS.remove(self)
        self.pgid = None
        self.log.close()


def cleanup():
    for p in list(WRK_LIVE):
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for g in list(LIVE_GROUPS):
        try:
            g.stop()
        except Exception as e:  # noqa: BLE001 - best effort at exit
            log(f"cleanup of {g.name}: {e}")


def _on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")
