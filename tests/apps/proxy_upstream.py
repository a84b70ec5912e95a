"""An upstream for tests/proxy.rs: Python's http.server (HTTP/1.1,
keep-alive, one thread per connection). Not an app.

    python3 proxy_upstream.py NAME (PORT | unix:PATH) [HEALTH_FLAG_FILE]

Answers:
  GET  /.../healthz   200 "ok", or 503 while HEALTH_FLAG_FILE exists
  GET  /.../big?n=N   N bytes (a repeating pattern), Content-Length
                      (text/plain with &t=text, else application/octet-stream)
  GET  /.../sse       X-Accel-Buffering: no; 5 events 300 ms apart
  GET  /.../accel?to=URI[&body=1]
                      X-Accel-Redirect: URI (X-Sendfile with &send=1),
                      Set-Cookie, X-Accel-Expires, Content-Type text/x-upstream,
                      an empty body (or "upstream body" with &body=1)
  GET  /.../both      Content-Length: 5 and Transfer-Encoding: chunked,
                      20 bytes in one chunk
  POST /.../slowread  reads the body 1 MiB per 0.1 s, then answers "LEN"
  POST /.../upload    reads the body; answers "LEN SHA256"
  any  other          text: name, method, target, Host, X-Forwarded-*,
                      Cookie, X_Forwarded_Host,
                      and conn= the port edge connected from (after
                      S seconds with ?sleep=S)

With IDLE_CLOSE=SECONDS in the environment, a kept connection that brings
no request for that long is closed (as gunicorn's `keepalive` does).
"""
import hashlib
import os
import socket
import socketserver
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

NAME = sys.argv[1]
WHERE = sys.argv[2]
FLAG = sys.argv[3] if len(sys.argv) > 3 else None
PATTERN = bytes(range(256)) * 4096  # 1 MiB


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # A socket timeout: on a kept connection, the wait for the next request.
    timeout = float(os.environ["IDLE_CLOSE"]) if os.environ.get("IDLE_CLOSE") else None

    def log_message(self, *a):
        pass

    def send_text(self, status, text, extra=()):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def answer(self):
        url = urlsplit(self.path)
        path = url.path
        if path.endswith("/healthz"):
            if FLAG and os.path.exists(FLAG):
                return self.send_text(503, "sick\n")
            return self.send_text(200, "ok\n")
        if path.endswith("/big"):
            q = parse_qs(url.query)
            n = int(q["n"][0])
            self.send_response(200)
            text = q.get("t") == ["text"]
            self.send_header("Content-Type", "text/plain" if text else "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            left = n
            while left > 0:
                chunk = PATTERN[: min(left, len(PATTERN))]
                self.wfile.write(chunk)
                left -= len(chunk)
            return
        if path.endswith("/sse"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("X-Accel-Buffering", "no")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(5):
                data = f"data: {i} {time.time():.3f}\n\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
                time.sleep(0.3)
            self.wfile.write(b"0\r\n\r\n")
            return
        if path.endswith("/both"):
            # Content-Length and chunked together (RFC 9112 §6.3: a proxy
            # must not pass the length on).
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"14\r\n" + b"x" * 20 + b"\r\n0\r\n\r\n")
            return
        if path.endswith("/accel"):
            q = parse_qs(url.query)
            body = b"upstream body\n" if q.get("body") == ["1"] else b""
            self.send_response(200)
            name = "X-Sendfile" if q.get("send") == ["1"] else "X-Accel-Redirect"
            self.send_header(name, q["to"][0])
            self.send_header("X-Accel-Expires", "10")
            self.send_header("Set-Cookie", "from=upstream")
            self.send_header("Content-Type", "text/x-upstream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        n = int(self.headers.get("Content-Length") or 0)
        if path.endswith("/slowread"):
            got = 0
            while got < n:
                b = self.rfile.read(min(1 << 20, n - got))
                if not b:
                    break
                got += len(b)
                time.sleep(0.1)
            return self.send_text(200, f"{got}\n")
        sleep = parse_qs(url.query).get("sleep")
        if sleep:
            time.sleep(float(sleep[0]))
        h = hashlib.sha256()
        got = 0
        while got < n:
            b = self.rfile.read(min(1 << 20, n - got))
            if not b:
                break
            h.update(b)
            got += len(b)
        if path.endswith("/upload"):
            return self.send_text(200, f"{got} {h.hexdigest()}\n")
        lines = [
            f"name={NAME}",
            f"method={self.command}",
            f"target={self.path}",
            f"host={self.headers.get('Host')}",
            f"xff={self.headers.get_all('X-Forwarded-For')}",
            f"xfp={self.headers.get_all('X-Forwarded-Proto')}",
            f"xfh={self.headers.get_all('X-Forwarded-Host')}",
            f"forwarded={self.headers.get('Forwarded')}",
            f"connection={self.headers.get('Connection')}",
            f"private={self.headers.get('X-Private')}",
            f"rid={self.headers.get('X-Request-Id')}",
            f"cookie={self.headers.get_all('Cookie')}",
            f"xfh_underscore={self.headers.get_all('X_Forwarded_Host')}",
            f"body={got}",
            f"conn={self.client_address[1]}",
        ]
        self.send_text(200, "\n".join(lines) + "\n", [("X-Upstream", NAME)])

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = answer


def quiet_resets(self, request, client_address):
    # A kept connection edge closes (or a killed edge) is not news.
    if not isinstance(sys.exc_info()[1], (ConnectionError, BrokenPipeError)):
        socketserver.BaseServer.handle_error(self, request, client_address)


ThreadingHTTPServer.handle_error = quiet_resets


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    handle_error = quiet_resets

    def get_request(self):
        sock, _ = super().get_request()
        return sock, ("unix", 0)


if WHERE.startswith("unix:"):
    path = WHERE[5:]
    if os.path.exists(path):
        os.unlink(path)
    server = UnixServer(path, Handler)
else:
    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer(("127.0.0.1", int(WHERE)), Handler)
print("ready", flush=True)
server.serve_forever()
