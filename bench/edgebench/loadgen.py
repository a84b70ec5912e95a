"""The load generators: wrk (closed loop), bench/loadgen.c (open loop, fixed
rate) and bench/slowloris.py (the slow-client attacker), each pinned to the
load CPU, bounded in time and killed with its session on the way out."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from select import select as wait_readable

from . import common
from .common import ATTACKER, LOADGEN, LUA, WRK_TIMEOUT
from .procs import WRK_LIVE
from .scenarios import ATTACK_BODIES, ATTACK_CONNS, RATE_CONNS

def _run_bounded(argv, seconds, live, what):
    """Run a load generator (own session, killed on timeout or Ctrl-C) and
    return the JSON after its `BENCHJSON ` marker."""
    p = subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
    live.append(p)
    try:
        out, _ = p.communicate(timeout=seconds + 30)
    except BaseException as e:  # timeout, or Ctrl-C while waiting
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        if isinstance(e, subprocess.TimeoutExpired):
            raise RuntimeError(f"{what} did not finish in time") from e
        raise
    finally:
        live.remove(p)
    m = re.search(r"^BENCHJSON (.*)$", out, re.M)
    if not m:
        raise RuntimeError(f"{what} output not understood: {out[-500:]}")
    return json.loads(m.group(1))


def run_wrk(port, path, seconds, conns, live, tls=False):
    scheme = "https" if tls else "http"
    argv = ["taskset", "-c", common.LOAD_CPU, "wrk", f"-t{common.WRK_THREADS}", f"-c{conns}",
            f"-d{seconds}s", "--timeout", WRK_TIMEOUT, "-s", str(LUA),
            f"{scheme}://127.0.0.1:{port}{path}"]
    return _run_bounded(argv, seconds, live, "wrk")


def run_loadgen(port, path, rate, seconds, warmup, live):
    """Open-loop run at `rate` req/s (bench/loadgen.c), pinned like wrk."""
    argv = ["taskset", "-c", common.LOAD_CPU, LOADGEN, "-p", port, "-u", path,
            "-r", f"{rate:.0f}", "-d", seconds, "-w", warmup,
            "-c", RATE_CONNS, "-t", WRK_TIMEOUT.rstrip("s")]
    return _run_bounded(argv, seconds + warmup + 5, live, "loadgen")


class Attacker:
    """bench/slowloris.py, pinned next to wrk, in its own session; bounded
    by its own --duration and killed by stop() (or cleanup())."""

    def __init__(self, port, seconds, logpath):
        argv = ["taskset", "-c", common.LOAD_CPU, sys.executable, ATTACKER,
                "--port", port, "--conns", ATTACK_CONNS,
                "--slow-bodies", ATTACK_BODIES, "--duration", seconds]
        self.log = open(logpath, "wb")
        self.log.write(("$ " + " ".join(map(str, argv)) + "\n").encode())
        self.log.flush()
        self.p = subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE,
                                  stderr=self.log, start_new_session=True)
        WRK_LIVE.append(self.p)
        self.out = b""

    def wait_ready(self, timeout):
        """Until the attacker says READY (every connection open and sending)."""
        deadline = time.time() + timeout
        while time.time() < deadline and b"\n" not in self.out:
            r, _, _ = wait_readable([self.p.stdout], [], [], 0.2)
            if r:
                chunk = os.read(self.p.stdout.fileno(), 4096)
                if not chunk:
                    break
                self.out += chunk
            elif self.p.poll() is not None:
                break
        m = re.search(rb"^READY (\d+)", self.out, re.M)
        return int(m.group(1)) if m else None

    def stop(self):
        """SIGTERM, then its counters (None if it printed none)."""
        try:
            self.p.send_signal(signal.SIGTERM)
            out, _ = self.p.communicate(timeout=15)
            self.out += out
        except subprocess.TimeoutExpired:
            os.killpg(self.p.pid, signal.SIGKILL)
            self.p.wait()
        finally:
            if self.p in WRK_LIVE:
                WRK_LIVE.remove(self.p)
            self.log.write(self.out)
            self.log.close()
        m = re.search(rb"^SLOWJSON (.*)$", self.out, re.M)
        return json.loads(m.group(1)) if m else None
