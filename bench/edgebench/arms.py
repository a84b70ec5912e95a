"""The arms: how each server is launched on a port (edge from a generated
config, gunicorn/granian/uvicorn/uwsgi from the venv, nginx in front or
alone), pinned to the server CPU, and the HTTP probes that wait for it."""

import http.client
import os
import ssl
import time

from . import common
from .common import (APPS, CERT, FILES, GTHREAD_THREADS, KEY, VENV,
                     free_port, toml_str, venv_env)
from .scenarios import (ASGI_MAX_CONCURRENCY, ASGI_STACK, EDGE_ARMS, EDGE_OBS,
                        EDGE_PIP, EDGE_RL, GRANIAN, GUNI, GUNI_TLS, GUNI_UVI,
                        NGINX, NGX_PROXY, PROXY_KEEPALIVE, SOAK_BODY_BUFFER,
                        UVICORN)

def http_get(port, path, timeout=2.0, tls=False):
    if tls:  # our own self-signed certificate: no verification
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        c = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=ctx)
    else:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers={"Host": f"127.0.0.1:{port}"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def wait_ready(group, port, timeout, tls=False):
    deadline = time.time() + timeout
    last = "no answer"
    while time.time() < deadline:
        why = group.dead()
        if why:
            return f"{why} before serving"
        try:
            status, _ = http_get(port, "/", timeout=1.0, tls=tls)
            if status < 500:
                return None
            last = f"GET / answered {status}"
        except (OSError, http.client.HTTPException) as e:
            last = f"GET /: {e.__class__.__name__}"
        time.sleep(0.1)
    return f"not ready within {timeout:.0f}s ({last})"


def nginx_conf(rundir, port, body, name="nginx"):
    """An nginx config in rundir/name/ (a second nginx of the same arm, e.g.
    the proxy scenario's upstream, takes another name)."""
    if name != "nginx":
        rundir = rundir / name
        rundir.mkdir(exist_ok=True)
    for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (rundir / d).mkdir(exist_ok=True)
    conf = f"""
user root;
worker_processes {common.NGINX_WORKERS};
daemon off;
master_process on;
pid {rundir}/nginx.pid;
error_log {rundir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    include {common.NGINX_MIME};
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    client_body_temp_path {rundir}/client_body;
    proxy_temp_path {rundir}/proxy;
    fastcgi_temp_path {rundir}/fastcgi;
    uwsgi_temp_path {rundir}/uwsgi;
    scgi_temp_path {rundir}/scgi;
{body}
}}
"""
    path = rundir / "nginx.conf"
    path.write_text(conf)
    return path


def pin(argv):
    """The whole tree on the server CPUs (edge's front sizes its runtime to
    the CPUs its affinity allows)."""
    return ["taskset", "-c", common.SERVER_CPU] + list(argv)


def launch_upstream(rundir, group):
    """The proxy scenario's upstream: nginx answering `Hello, World!` itself,
    on its own port, in the arm's group (so it is stopped with it)."""
    up = free_port()
    body = f"""
    server {{
        listen 127.0.0.1:{up};
        location / {{ default_type text/plain; return 200 "Hello, World!"; }}
    }}"""
    group.spawn(pin(["nginx", "-c", nginx_conf(rundir, up, body, "upstream")]), cwd=rundir)
    return up


def launch(arm, sc, port, rundir, group, edge_bin):
    env = venv_env()
    upstream = launch_upstream(rundir, group) if sc.get("proxy") else None
    vb = VENV / "bin"
    mod, w = sc["module"], str(sc["workers"])
    if arm in EDGE_ARMS:
        addr = toml_str(f"127.0.0.1:{port}")
        if sc.get("tls"):
            # HTTPS only: a [tls] table makes server.listen default to none.
            conf = ["[tls]", f"listen = [{addr}]",
                    f"cert = {toml_str(CERT)}", f"key = {toml_str(KEY)}"]
        else:
            conf = ["[server]", f"listen = [{addr}]"]
        conf += [
            "",
            "[app]",
            f"module = {toml_str(mod)}",
            f"pythonpath = [{toml_str(APPS)}]",
            f"workers = {w}",
        ]
        if sc.get("venv") and arm != EDGE_PIP:
            conf.append(f"venv = {toml_str(VENV)}")
        if sc.get("interface") == "asgi":
            # The peers' loop (uvloop when the venv has it), spelled out.
            conf += ['interface = "asgi"', 'lifespan = "auto"',
                     f"max_concurrency = {ASGI_MAX_CONCURRENCY}",
                     f"loop = {toml_str(ASGI_STACK['loop'])}"]
        if arm == EDGE_OBS:
            conf += ["", "[log]", f"access = {toml_str(rundir / 'access.log')}",
                     "", "[metrics]", f"listen = {toml_str(f'127.0.0.1:{free_port()}')}"]
        else:
            conf += ["", "[log]", 'access = "off"']
        if sc.get("static"):
            conf += ["", "[[static]]", 'url = "/static/"', f"dir = {toml_str(FILES)}"]
        if upstream:
            conf += ["", "[[proxy]]", 'url = "/api/"',
                     f"upstreams = [{toml_str(f'127.0.0.1:{upstream}')}]",
                     f"keepalive = {sc.get('keepalive', PROXY_KEEPALIVE)}"]
        if arm == EDGE_RL:
            # Never refuses: the limiter's bookkeeping is all that is added.
            url = "/static/" if sc.get("static") else "/"
            conf += ["", "[[rate_limit]]", f"url = {toml_str(url)}",
                     'rate = "1000000/s"', "burst = 1000000"]
        if sc.get("kind") == "soak":
            # Bodies above body_buffer are spooled to temp_dir, a directory
            # of its own so that leftovers can be counted.
            tmp = rundir / "soak-tmp"
            tmp.mkdir(exist_ok=True)
            conf += ["", "[limits]", f'body_buffer = "{SOAK_BODY_BUFFER}B"',
                     f'response_buffer = "{SOAK_BODY_BUFFER}B"',
                     f"temp_dir = {toml_str(tmp)}"]
        if sc.get("kind") == "slow":
            # The defaults, spelled out: the attack's connections must exhaust
            # nothing. 500 slow connections are far below max_connections,
            # and a head still incomplete 10 s after its first byte is
            # dropped (the attacker re-opens it at once); slow bodies are
            # buffered by the front, never by a worker.
            conf += ["", "[limits]", "max_connections = 10000",
                     'client_header_timeout = "10s"', 'client_body_timeout = "30s"']
        cpath = rundir / "edge.toml"
        cpath.write_text("\n".join(conf) + "\n")
        group.log.write(cpath.read_bytes())
        # edge runs with a clean env (no venv on PATH): the config names it.
        eenv = dict(os.environ)
        eenv.pop("PYTHONPATH", None)
        program = VENV / "bin" / "edge" if arm == EDGE_PIP else edge_bin
        group.spawn(pin([program, "--conf", cpath]), cwd=rundir, env=eenv)
    elif arm in (GUNI, GUNI_TLS, GUNI_UVI):
        sock = rundir / "gunicorn.sock"
        sock.unlink(missing_ok=True)
        worker = ASGI_STACK["worker"] if arm == GUNI_UVI else "sync"
        group.spawn(pin([vb / "gunicorn", "-k", worker, "-w", w,
                         "-b", f"unix:{sock}", "--pythonpath", APPS, mod]),
                    cwd=APPS, env=env)
        ssl_conf = ""
        if arm == GUNI_TLS:  # nginx's TLS defaults otherwise (TLS 1.2 + 1.3)
            ssl_conf = f""" ssl;
        ssl_certificate {CERT};
        ssl_certificate_key {KEY}"""
        body = f"""
    upstream app_server {{ server unix:{sock} fail_timeout=0; }}
    server {{
        listen 127.0.0.1:{port}{ssl_conf};
        location / {{
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header Host $http_host;
            proxy_redirect off;
            proxy_pass http://app_server;
        }}
    }}"""
        conf = nginx_conf(rundir, port, body)
        group.spawn(pin(["nginx", "-c", conf]), cwd=rundir)
    elif arm == "gunicorn sync":
        group.spawn(pin([vb / "gunicorn", "-k", "sync", "-w", w,
                         "-b", f"127.0.0.1:{port}", "--pythonpath", APPS, mod]),
                    cwd=APPS, env=env)
    elif arm == "gunicorn gthread":
        group.spawn(pin([vb / "gunicorn", "-k", "gthread", "--threads",
                         str(GTHREAD_THREADS), "-w", w,
                         "-b", f"127.0.0.1:{port}", "--pythonpath", APPS, mod]),
                    cwd=APPS, env=env)
    elif arm == GRANIAN:
        tls = ["--ssl-certificate", CERT, "--ssl-keyfile", KEY] if sc.get("tls") else []
        if sc.get("interface") == "asgi":  # its "auto" loop, spelled out
            iface = ["--interface", "asgi", "--loop", ASGI_STACK["loop"]]
        else:
            iface = ["--interface", "wsgi"]
        group.spawn(pin([vb / "granian", *iface, "--workers", w,
                         "--host", "127.0.0.1", "--port", str(port),
                         "--no-ws", *tls, "--working-dir", APPS, mod]),
                    cwd=APPS, env=env)
    elif arm == UVICORN:
        group.spawn(pin([vb / "uvicorn", "--workers", w,
                         "--host", "127.0.0.1", "--port", str(port),
                         "--http", ASGI_STACK["http"], "--loop", ASGI_STACK["loop"],
                         "--no-access-log", "--app-dir", APPS, mod]),
                    cwd=APPS, env=env)
    elif arm == "uwsgi":
        # --http-socket (uwsgi's native HTTP parser, no extra router process).
        # Its sync worker does not do keep-alive: it closes after each answer
        # but without saying so, which wrk counts as a read error per request,
        # so say "Connection: close" like gunicorn sync does. (--http11-socket
        # keeps connections open and then starves all but a few of them.)
        group.spawn(pin([vb / "uwsgi", "--http-socket", f"127.0.0.1:{port}",
                         "--add-header", "Connection: close", "--master", "--processes", w, "--module", mod,
                         "--pythonpath", APPS, "--virtualenv", VENV,
                         "--need-app", "--die-on-term", "--disable-logging",
                         "--listen", "1024"]),
                    cwd=APPS, env=env)
    elif arm == "nginx return 200":
        body = f"""
    server {{
        listen 127.0.0.1:{port};
        location / {{ default_type text/plain; return 200 "Hello, World!"; }}
    }}"""
        group.spawn(pin(["nginx", "-c", nginx_conf(rundir, port, body)]), cwd=rundir)
    elif arm == NGX_PROXY:  # the same upstream, nginx's keep-alive recipe
        body = f"""
    upstream up {{ server 127.0.0.1:{upstream}; keepalive {sc.get('keepalive', PROXY_KEEPALIVE)}; }}
    server {{
        listen 127.0.0.1:{port};
        location /api/ {{
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
        }}
        location / {{ return 404; }}
    }}"""
        group.spawn(pin(["nginx", "-c", nginx_conf(rundir, port, body)]), cwd=rundir)
    elif arm == NGINX:  # static files
        body = f"""
    server {{
        listen 127.0.0.1:{port};
        location /static/ {{ alias {FILES}/; }}
        location / {{ return 404; }}
    }}"""
        group.spawn(pin(["nginx", "-c", nginx_conf(rundir, port, body)]), cwd=rundir)
    else:
        raise ValueError(arm)
