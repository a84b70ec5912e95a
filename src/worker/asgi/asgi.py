"""edge's ASGI 3.0 server loop, run inside a worker process.

The Rust side (`worker/asgi/`) owns the sockets and the wire format:
`io.take()` pulls whole requests from this worker's inbox and the shared
queue (each with its `scope` already built), `io.read_channel()` returns
what the front sent this worker (client disconnects, WebSocket messages),
and `io.respond()`, `io.body()`, `io.ws_*()` write response frames. This
module holds what is simplest to say in Python: one asyncio task per
request, `receive`, WebSocket `send`, the lifespan protocol, timeouts and
the graceful stop. An HTTP request's `send` comes with it from `take()`,
made in Rust (`send.rs`).
"""

import asyncio
import sys
import time
from collections import deque

_ASGI = {"version": "3.0", "spec_version": "2.4"}
_BODY_CHUNK = 1 << 20
_BEAT = 0.2  # seconds between heartbeats (TERM check, timeouts, liveness)
_Task = asyncio.Task
# CPython 3.12+: a request's task starts at once (eager_start), so an app
# that answers without waiting is never scheduled on the loop at all.
_EAGER = sys.version_info >= (3, 12)


class _Cycle:
    __slots__ = ("server", "id", "slot", "scope", "rid", "started",
                 "waiter", "disconnected", "task")

    # The name of the cycle's task. Given, asyncio does not format a
    # "Task-<n>" per task (1.5k of a worker's ~45k instructions per
    # request on CPython 3.11).
    task_name = "edge-cycle"

    def __init__(self, server, id, slot, scope, rid):
        self.server = server
        self.id = id
        self.slot = slot
        self.scope = scope
        self.rid = rid
        self.started = time.monotonic()
        self.waiter = None
        self.disconnected = False
        self.task = None

    def _wake(self):
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)


class Http(_Cycle):
    """One HTTP request: `receive` and the app's task. Its `send` is Rust's
    (`worker/asgi/send.rs`): it holds the response's state (`send.done`)
    and the future a waiting `receive` is woken by when the response ends."""

    __slots__ = ("body", "remaining", "expired", "streaming", "piece", "send")
    task_name = "edge-http"

    def __init__(self, server, id, slot, scope, rid, body, length, send):
        # _Cycle's fields, set here: no super() call per request.
        self.server = server
        self.id = id
        self.slot = slot
        self.scope = scope
        self.rid = rid
        self.started = time.monotonic()
        self.waiter = None
        self.disconnected = False
        self.task = None
        self.body = body
        self.remaining = length
        # app.stream_request_body: the body is pulled from the front.
        self.streaming = body is None
        self.piece = None
        self.expired = False
        self.send = send

    async def run(self):
        server = self.server
        io = server.io
        try:
            await server.app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            if self.expired:
                io.log(40, self.rid, f"request {self.scope['method']} {self.scope['path']} "
                       f"ran past the timeout ({server.timeout:g}s): cancelled")
                self.send.fail(504, "timeout")
            else:
                self.send.fail(503, "worker stopping")
        except BaseException as e:  # noqa: B036 - the app's errors are answered, never raised
            io.log_exception(self.rid, "Exception in ASGI application", e)
            self.send.fail(500, "application error")
        else:
            if not self.send.done:
                io.log(40, self.rid, "ASGI callable returned without completing the response")
                self.send.fail(500, "incomplete response")
        finally:
            if self.body is not None and self.body.__class__ is not bytes:
                self.body.close()
            server.finished(self)

    def _wait(self):
        """A future for `receive` to wait on: woken by a channel event
        (`_wake`) or by the end of the response (`send`)."""
        w = self.waiter = self.send.waiter = self.server.loop.create_future()
        return w

    async def receive(self):
        body = self.body
        if body is not None:
            if body.__class__ is bytes:
                self.body = None
                return {"type": "http.request", "body": body, "more_body": False}
            chunk = body.read(min(_BODY_CHUNK, self.remaining))
            self.remaining -= len(chunk)
            more = self.remaining > 0 and bool(chunk)
            if not more:
                body.close()
                self.body = None
            return {"type": "http.request", "body": chunk, "more_body": more}
        if self.streaming and not self.disconnected:
            self.server.io.pull(self.id)
            await self._wait()
            piece, self.piece = self.piece, None
            if piece is not None:
                if piece is _END:
                    self.streaming = False
                    return {"type": "http.request", "body": b"", "more_body": False}
                return {"type": "http.request", "body": piece, "more_body": True}
        if not (self.disconnected or self.send.done):
            await self._wait()
        return {"type": "http.disconnect"}

    def on_piece(self, piece):
        self.piece = piece
        self._wake()


_CONNECTING, _OPEN, _CLOSED = 0, 1, 2
_END = object()  # the end of a streamed request body


class WebSocket(_Cycle):
    """One WebSocket: the front holds the client's connection and relays
    messages through this worker's channel."""

    __slots__ = ("state", "connected", "inbox", "close_code", "close_reason", "expired")
    task_name = "edge-websocket"

    def __init__(self, server, id, slot, scope, rid):
        super().__init__(server, id, slot, scope, rid)
        self.state = _CONNECTING
        self.connected = False
        self.inbox = deque()
        self.close_code = None
        self.close_reason = ""
        self.expired = False  # the handshake ran past the timeout

    async def run(self):
        server = self.server
        io = server.io
        try:
            await server.app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            if self.state == _CONNECTING:
                io.error(self.id, 504 if self.expired else 503)
            elif self.state == _OPEN:
                io.ws_close(self.id, 1001, "server going away")
        except BaseException as e:  # noqa: B036
            io.log_exception(self.rid, "Exception in ASGI application (WebSocket)", e)
            if self.state == _CONNECTING:
                io.error(self.id, 500)
            elif self.state == _OPEN:
                io.ws_close(self.id, 1011, "")
        else:
            if self.state == _CONNECTING:
                io.log(40, self.rid, "ASGI callable returned without accepting "
                       "or closing the WebSocket")
                io.error(self.id, 500)
            elif self.state == _OPEN:
                io.ws_close(self.id, 1000, "")
        finally:
            self.state = _CLOSED
            server.finished(self)

    def on_message(self, data):
        if data.__class__ is str:
            self.inbox.append({"type": "websocket.receive", "text": data})
        else:
            self.inbox.append({"type": "websocket.receive", "bytes": data})
        self._wake()

    def on_close(self, code, reason):
        self.close_code = code
        self.close_reason = reason
        self.disconnected = True
        self._wake()

    async def receive(self):
        if not self.connected:
            self.connected = True
            return {"type": "websocket.connect"}
        while not self.inbox:
            if self.disconnected:
                return {"type": "websocket.disconnect",
                        "code": 1006 if self.close_code is None else self.close_code,
                        "reason": self.close_reason}
            self.waiter = self.server.loop.create_future()
            await self.waiter
        return self.inbox.popleft()

    async def send(self, message):
        kind = message["type"]
        io = self.server.io
        if kind == "websocket.send":
            if self.state != _OPEN:
                raise RuntimeError("Unexpected ASGI message 'websocket.send': the WebSocket "
                                   + ("is not accepted yet." if self.state == _CONNECTING
                                      else "is closed."))
            if self.disconnected:
                return
            data = message.get("bytes")
            if data is None:
                data = message.get("text")
                if data is None:
                    raise TypeError("websocket.send needs 'bytes' or 'text'")
            io.ws_send(self.id, data)
        elif kind == "websocket.accept":
            if self.state != _CONNECTING:
                raise RuntimeError("Unexpected ASGI message 'websocket.accept': "
                                   "the WebSocket is already accepted or closed.")
            io.ws_accept(self.id, message.get("subprotocol"), message.get("headers", ()))
            self.state = _OPEN
        elif kind == "websocket.close":
            if self.state == _CONNECTING:
                io.error(self.id, 403)
            elif self.state == _OPEN and not self.disconnected:
                code = message.get("code", 1000)
                reason = message.get("reason") or ""
                io.ws_close(self.id, code, reason)
            elif self.state == _CLOSED:
                raise RuntimeError("Unexpected ASGI message 'websocket.close': "
                                   "the WebSocket is already closed.")
            self.state = _CLOSED
        else:
            raise RuntimeError(f"Unexpected ASGI message {kind!r} for a WebSocket.")


class Lifespan:
    """The lifespan protocol: one task for the app's whole life."""

    def __init__(self, server, mode):
        self.server = server
        self.mode = mode  # "auto" | "on"
        self.inbox = asyncio.Queue()
        self.startup_done = asyncio.Event()
        self.shutdown_done = asyncio.Event()
        self.failed = None  # message when startup failed
        self.unsupported = False
        self.shutdown_failed = None
        self.task = None

    async def main(self):
        scope = {"type": "lifespan", "asgi": dict(_ASGI), "state": self.server.state}
        try:
            await self.server.app(scope, self.receive, self.send)
        except BaseException as e:  # noqa: B036
            if not self.startup_done.is_set():
                if self.mode == "auto":
                    self.unsupported = True
                    self.server.io.log(20, b"", "ASGI lifespan unsupported by the app "
                                       f"({type(e).__name__}: {e}); going on without it")
                else:
                    self.failed = self.server.io.format_exception(e)
            else:
                self.shutdown_failed = self.server.io.format_exception(e)
        finally:
            if not self.startup_done.is_set() and self.failed is None and not self.unsupported:
                self.failed = "the app returned before completing lifespan startup"
                if self.mode == "auto":
                    self.failed = None
                    self.unsupported = True
            self.startup_done.set()
            self.shutdown_done.set()

    async def receive(self):
        return await self.inbox.get()

    async def send(self, message):
        kind = message["type"]
        if kind == "lifespan.startup.complete":
            self.startup_done.set()
        elif kind == "lifespan.startup.failed":
            self.failed = message.get("message") or "lifespan.startup.failed"
            self.startup_done.set()
        elif kind == "lifespan.shutdown.complete":
            self.shutdown_done.set()
        elif kind == "lifespan.shutdown.failed":
            self.shutdown_failed = message.get("message") or "lifespan.shutdown.failed"
            self.shutdown_done.set()
        else:
            raise RuntimeError(f"Unexpected ASGI message {kind!r} for the lifespan scope.")

    async def startup(self):
        self.task = asyncio.get_running_loop().create_task(self.main())
        await self.inbox.put({"type": "lifespan.startup"})
        await self.startup_done.wait()
        return self.failed

    async def shutdown(self, timeout):
        if self.unsupported or self.task is None or self.task.done():
            return
        await self.inbox.put({"type": "lifespan.shutdown"})
        try:
            await asyncio.wait_for(self.shutdown_done.wait(), timeout)
        except asyncio.TimeoutError:
            self.server.io.log(30, b"", f"ASGI lifespan shutdown did not finish in {timeout:g}s")
        if self.shutdown_failed:
            self.server.io.log(40, b"", f"ASGI lifespan shutdown failed: {self.shutdown_failed}")


class Server:
    def __init__(self, io, app, max_concurrency, timeout, graceful_timeout, lifespan):
        self.io = io
        self.app = app
        self.max = max_concurrency
        self.timeout = timeout
        self.graceful_timeout = graceful_timeout
        self.lifespan_mode = lifespan  # "auto" | "on" | "off"
        self.lifespan = None
        self.state = {}
        self.cycles = {}
        self.reading = False
        self.loop = None
        self.stopping = None
        self.idle = None
        self.plain_tasks = False
        self.inbox_fd = io.inbox_fd

    # --- lifespan ---

    async def startup(self):
        """None, or why the app refused to start."""
        self.loop = asyncio.get_running_loop()
        if self.lifespan_mode == "off":
            return None
        self.lifespan = Lifespan(self, self.lifespan_mode)
        failed = await self.lifespan.startup()
        if failed is not None:
            return failed
        self.io.set_state(self.state if not self.lifespan.unsupported else None)
        return None

    # --- the loop ---

    async def serve(self):
        loop = self.loop
        self.stopping = loop.create_future()
        # With no task factory, asyncio's and uvloop's create_task only
        # call Task(coro, loop=loop), then set_name: on_queue calls Task
        # itself, named (create_task would format a "Task-<n>" first).
        self.plain_tasks = (loop.get_task_factory() is None
                            and (isinstance(loop, asyncio.BaseEventLoop)
                                 or type(loop).__module__ == "uvloop"))
        # Responses written during one loop iteration leave in one write.
        self.io.set_scheduler(loop.call_soon, self.io.flush)
        loop.add_reader(self.io.channel_fd, self.on_channel)
        self.resume()
        self.io.inbox_open(True)
        loop.call_soon(self.beat)
        await self.stopping
        # The front sends here no more and takes back what is left.
        self.io.inbox_open(False)
        self.pause()
        if self.cycles:
            self.idle = loop.create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self.idle),
                                       max(0.1, self.graceful_timeout * 0.9))
            except asyncio.TimeoutError:
                self.io.log(30, b"", f"{len(self.cycles)} request(s) or WebSocket(s) still "
                            "open after graceful_timeout: cancelled")
                for c in list(self.cycles.values()):
                    c.task.cancel()
                await asyncio.sleep(0)
        if self.lifespan is not None:
            await self.lifespan.shutdown(max(1.0, self.graceful_timeout * 0.1))
        loop.remove_reader(self.io.channel_fd)
        self.io.flush()

    def resume(self):
        if not self.reading and not self.stopping.done():
            self.loop.add_reader(self.io.queue_fd, self.on_queue)
            if self.inbox_fd >= 0:
                self.loop.add_reader(self.inbox_fd, self.on_inbox)
            self.reading = True

    def pause(self):
        if self.reading:
            self.loop.remove_reader(self.io.queue_fd)
            if self.inbox_fd >= 0:
                self.loop.remove_reader(self.inbox_fd)
            self.reading = False

    def on_queue(self):
        self.take(False)

    def on_inbox(self):
        self.take(True)

    def take(self, inbox):
        room = self.max - len(self.cycles)
        if room <= 0:
            self.pause()
            return
        loop = self.loop
        cycles = self.cycles
        taken = self.io.take(room, inbox)
        if not taken and self.io.spent():
            # max_requests reached and another worker serves: read the
            # queue no more (the heartbeat asks again); the front takes
            # back what its inbox holds.
            self.io.inbox_open(False)
            self.pause()
            return
        plain = self.plain_tasks
        for id, slot, ws, scope, body, length, rid, send in taken:
            if ws:
                c = WebSocket(self, id, slot, scope, rid)
            else:
                c = Http(self, id, slot, scope, rid, body, length, send)
            cycles[id] = c
            name = c.task_name
            if not plain:
                c.task = loop.create_task(c.run(), name=name)
            elif _EAGER:
                c.task = _Task(c.run(), loop=loop, name=name, eager_start=True)
            else:
                c.task = _Task(c.run(), loop=loop, name=name)
        if taken:
            self.io.flush_after_batch()
        if len(cycles) >= self.max:
            self.pause()

    def on_channel(self):
        events = self.io.read_channel()
        if events is None:
            self.io.log(40, b"", "the front closed this worker's channel")
            self.loop.remove_reader(self.io.channel_fd)
            if not self.stopping.done():
                self.stopping.set_result(None)
            return
        cycles = self.cycles
        for id, kind, a, b in events:
            c = cycles.get(id)
            if c is None:
                continue
            if kind == 0:  # client gone
                if c.__class__ is WebSocket:
                    c.on_close(1006, "")
                else:
                    c.disconnected = True
                    c._wake()
            elif kind == 1:  # WebSocket message
                c.on_message(a)
            elif kind == 2:  # WebSocket close
                c.on_close(a, b)
            elif kind == 3:  # a chunk of a streamed request body
                c.on_piece(a)
            else:  # its end
                c.on_piece(_END)

    def finished(self, c):
        del self.cycles[c.id]
        self.io.done(c.slot)
        if not self.reading:
            self.resume()
        if self.idle is not None and not self.cycles and not self.idle.done():
            self.idle.set_result(None)

    def beat(self):
        if self.io.heartbeat():
            if not self.stopping.done():
                self.stopping.set_result(None)
        else:
            if (not self.reading and len(self.cycles) < self.max
                    and not self.io.spent()):
                # Paused past max_requests: the last worker serves again.
                self.resume()
                self.io.inbox_open(True)
            now = time.monotonic()
            limit = self.timeout
            for c in self.cycles.values():
                if now - c.started > limit:
                    if c.__class__ is Http:
                        if not c.expired and not c.send.done:
                            c.expired = True
                            c.task.cancel()
                    elif c.state == _CONNECTING and not c.expired:
                        c.expired = True
                        c.task.cancel()
        self.loop.call_later(_BEAT, self.beat)


def is_asgi(app):
    """`interface = "auto"`: an ASGI 3 app is a coroutine function, or an
    object whose `__call__` is one (uvicorn's test, minus ASGI 2)."""
    import inspect

    if inspect.isclass(app):
        return False
    if inspect.iscoroutinefunction(app):
        return True
    call = getattr(app, "__call__", None)
    return inspect.iscoroutinefunction(call)


def new_loop(kind):
    """(loop, name) for `[app] loop`."""
    if kind in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise
        else:
            loop = uvloop.new_event_loop()
            asyncio.set_event_loop(loop)
            return loop, "uvloop"
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    return loop, "asyncio"
