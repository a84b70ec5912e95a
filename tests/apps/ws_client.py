"""A WebSocket client for tests/asgi_websocket.rs, run with the test venv's
python (it needs the `websockets` package). Not an app.

    python ws_client.py SCENARIO BASE_URL [ARG]

BASE_URL is "ws://127.0.0.1:PORT". Prints one JSON object on stdout and
exits 0; the Rust test asserts on it. Every scenario is bounded by a
20 s overall timeout (then {"error": "timeout"}).

Scenarios:
  echo          /ws/echo: a text and a binary message round trip
  big           /ws/echo: a 1 MiB text and a 1 MiB binary message round trip
  app_close     /ws/echo: asks the app to close with code ARG
  client_close  /ws/echo: the client closes with code ARG, reason "client-bye"
  subprotocol   /ws/echo and /ws/info offering ["chat.v1", "chat.v2"]
  oversize      /ws/echo: one binary message of ARG bytes; reports the close
  reject        /ws/reject: the handshake's HTTP status
  concurrent    ARG connections at once to /ws/echo, 10 messages each
  scope         /ws-scope?x=1&y=%C3%A9 (the raw app) offering ["p1", "p2"]
  ping          /ws/echo: a client ping with a payload; reports the pong
  held          /ws/echo: one echo, then writes the file ARG and waits for
                the server to close; reports the close and how long it took
"""
import asyncio
import hashlib
import json
import sys
import time

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus


def closed_info(e):
    rcvd = getattr(e, "rcvd", None)
    return {
        "code": rcvd.code if rcvd is not None else None,
        "reason": rcvd.reason if rcvd is not None else None,
        "exception": type(e).__name__,
    }


def sha(b):
    return hashlib.sha256(b).hexdigest()


def conn(url, **kw):
    kw.setdefault("max_size", None)
    kw.setdefault("open_timeout", 10)
    kw.setdefault("close_timeout", 5)
    kw.setdefault("ping_interval", None)
    return connect(url, **kw)


async def echo(base, arg):
    out = {}
    async with conn(base + "/ws/echo") as ws:
        await ws.send("hello \u2713 edge")
        got = await ws.recv()
        out["text"] = got
        out["text_type"] = type(got).__name__
        payload = bytes(range(256)) * 4
        await ws.send(payload)
        got = await ws.recv()
        out["binary_type"] = type(got).__name__
        out["binary_equal"] = got == payload
        out["binary_len"] = len(got)
        # A second round trip on the same connection.
        await ws.send("again")
        out["text2"] = await ws.recv()
    return out


async def big(base, arg):
    out = {}
    size = 1 << 20
    async with conn(base + "/ws/echo") as ws:
        text = ("0123456789abcdef" * (size // 16))[:size]
        await ws.send(text)
        got = await ws.recv()
        out["text_len"] = len(got)
        out["text_equal"] = got == text
        data = bytes((i * 7 + 3) & 0xFF for i in range(size))
        await ws.send(data)
        got = await ws.recv()
        out["binary_len"] = len(got)
        out["binary_equal"] = got == data
        out["sent_sha"] = sha(data)
        out["got_sha"] = sha(got) if isinstance(got, bytes) else None
    return out


async def app_close(base, arg):
    code = int(arg or "4001")
    async with conn(base + "/ws/echo") as ws:
        await ws.send("close:%d" % code)
        try:
            msg = await ws.recv()
            return {"unexpected_message": repr(msg)[:200]}
        except ConnectionClosed as e:
            return closed_info(e)


async def client_close(base, arg):
    code = int(arg or "4002")
    async with conn(base + "/ws/echo") as ws:
        await ws.send("before close")
        first = await ws.recv()
        await ws.close(code=code, reason="client-bye")
        return {"first": first, "close_code": ws.close_code,
                "close_reason": ws.close_reason}


async def subprotocol(base, arg):
    out = {}
    async with conn(base + "/ws/echo", subprotocols=["chat.v1", "chat.v2"]) as ws:
        out["echo_subprotocol"] = ws.subprotocol
        await ws.send("sp")
        out["echo"] = await ws.recv()
    async with conn(base + "/ws/info?a=1", subprotocols=["chat.v1", "chat.v2"]) as ws:
        out["info_subprotocol"] = ws.subprotocol
        out["info"] = json.loads(await ws.recv())
    async with conn(base + "/ws/echo") as ws:
        out["none_subprotocol"] = ws.subprotocol
    return out


async def oversize(base, arg):
    size = int(arg)
    async with conn(base + "/ws/echo") as ws:
        try:
            # The server may close while the message is still being sent.
            await ws.send(b"x" * size)
            msg = await ws.recv()
            return {"unexpected_message_len": len(msg)}
        except ConnectionClosed as e:
            return closed_info(e)


async def reject(base, arg):
    try:
        async with conn(base + "/ws/reject") as ws:
            return {"opened": True, "subprotocol": ws.subprotocol}
    except InvalidStatus as e:
        return {"opened": False, "status": e.response.status_code}


async def concurrent(base, arg):
    n = int(arg or "20")
    start = time.monotonic()

    async def one(i):
        async with conn(base + "/ws/echo") as ws:
            ok = 0
            for j in range(10):
                msg = "c%d-m%d" % (i, j)
                await ws.send(msg)
                if await ws.recv() == msg:
                    ok += 1
            return ok

    results = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
    return {
        "ok": [r if isinstance(r, int) else repr(r)[:200] for r in results],
        "elapsed": time.monotonic() - start,
    }


async def scope(base, arg):
    async with conn(base + "/ws-scope?x=1&y=%C3%A9", subprotocols=["p1", "p2"],
                    additional_headers={"X-Custom-Test": "Yes"}) as ws:
        text = await ws.recv()
        out = {"subprotocol": ws.subprotocol, "message": json.loads(text)}
        try:
            await ws.recv()
        except ConnectionClosed as e:
            out["close"] = closed_info(e)
        return out


async def ping(base, arg):
    async with conn(base + "/ws/echo") as ws:
        waiter = await ws.ping(b"are you there")
        latency = await asyncio.wait_for(waiter, 5)
        await ws.send("after-ping")
        return {"pong": True, "latency_ok": latency < 5, "echo": await ws.recv()}


async def held(base, arg):
    async with conn(base + "/ws/echo") as ws:
        await ws.send("hold")
        first = await ws.recv()
        with open(arg, "w") as f:
            f.write("open\n")
        start = time.monotonic()
        try:
            while True:
                await ws.recv()
        except ConnectionClosed as e:
            out = closed_info(e)
            out["first"] = first
            out["after_s"] = round(time.monotonic() - start, 2)
            return out


SCENARIOS = {
    "echo": echo,
    "big": big,
    "app_close": app_close,
    "client_close": client_close,
    "subprotocol": subprotocol,
    "oversize": oversize,
    "reject": reject,
    "concurrent": concurrent,
    "scope": scope,
    "ping": ping,
    "held": held,
}


async def main():
    name, base = sys.argv[1], sys.argv[2]
    arg = sys.argv[3] if len(sys.argv) > 3 else None
    try:
        return await asyncio.wait_for(SCENARIOS[name](base, arg), 20)
    except asyncio.TimeoutError:
        return {"error": "timeout"}
    except Exception as e:  # reported to the test, which fails with it
        return {"error": "%s: %s" % (type(e).__name__, e)}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
