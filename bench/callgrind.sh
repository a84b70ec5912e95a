#!/usr/bin/env bash
# Instructions per request for edge's front and for a worker, counted by
# callgrind: a figure that stays put on a noisy, shared machine where req/s
# do not (see bench/README.md, "Instruction counts").
#
#   bench/callgrind.sh                      # 2000 requests, 1 connection, hello world
#   bench/callgrind.sh --requests 5000 --conns 8 --edge-bin target/release/edge
#
# Options: --requests N (measured requests, default 2000), --workers N
# (default 1), --warmup N
# (requests in both runs, default 200), --conns C (client connections, each
# sequential keep-alive; default 1), --app MODULE:ATTR (default hello:app from
# bench/apps), --path PATH (default /), --edge-bin PATH (default
# $CARGO_TARGET_DIR/release/edge, else target/release/edge; build it first:
# `cargo build --release`), --out DIR (default bench/out/callgrind),
# --interface asgi (with e.g. --app asgihello:app: an ASGI worker), --venv
# DIR (the app's virtualenv, e.g. bench/.venv for uvloop), --proxy (the
# requests go to a [[proxy]] route, `/api/`, whose upstream is an nginx
# `return 200` started by this script: the front's cost per proxied request,
# one kept upstream connection per client connection, so no connect churn;
# --keepalive N sets the route's kept connections, 0 = a new upstream
# connection per request: the cost of connect churn).
#
# How: valgrind follows fork(), and edge forks its front and workers without
# exec, so one `valgrind --tool=callgrind --callgrind-out-file=cg.%p edge`
# profiles every process into its own file (%p = pid). A forked child starts
# with its parent's counts and vgdb cannot reach it to zero them, so the
# script runs edge twice: run A serves WARMUP requests, run B serves
# WARMUP + N; each process dumps its totals when edge stops (TERM). For each
# role (the arbiter `edge`, `edge-front`, `edge-worker`), (B - A) / N is the
# cost of one request with startup, warm-up and shutdown cancelled out.
# PYTHONHASHSEED=0 keeps the worker's dict layouts identical between runs.
# Time-driven work (timers, the arbiter's heartbeat checks) does not cancel
# exactly: the arbiter's own figure shows how big that noise is.
#
# The files of run B stay in the output directory for
# `callgrind_annotate bench/out/callgrind/b/cg.<pid>` (or kcachegrind); they
# include startup, so look at the per-request functions.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
requests=2000
warmup=200
conns=1
workers=1
app=hello:app
path=/
edge_bin=""
interface=wsgi
venv=""
proxy=""
keepalive=64
out="$here/out/callgrind"

while [ $# -gt 0 ]; do
    case "$1" in
        --requests) requests=$2; shift 2 ;;
        --warmup) warmup=$2; shift 2 ;;
        --conns) conns=$2; shift 2 ;;
        --workers) workers=$2; shift 2 ;;
        --app) app=$2; shift 2 ;;
        --path) path=$2; shift 2 ;;
        --edge-bin) edge_bin=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --interface) interface=$2; shift 2 ;;
        --venv) venv=$(realpath "$2"); shift 2 ;;  # edge reads it relative to the config
        --proxy) proxy=1; path=/api/; shift ;;
        --keepalive) keepalive=$2; shift 2 ;;
        -h|--help) sed -n '2,35p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
done

if [ -z "$edge_bin" ]; then
    edge_bin="${CARGO_TARGET_DIR:-$repo/target}/release/edge"
fi
[ -x "$edge_bin" ] || { echo "no edge binary at $edge_bin (cargo build --release, or --edge-bin)" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
python=$(command -v python3)

rm -rf "$out"
mkdir -p "$out"
edge_pid=""
upstream_pid=""
trap '[ -n "$edge_pid" ] && kill -KILL "$edge_pid" 2>/dev/null; [ -n "$upstream_pid" ] && kill "$upstream_pid" 2>/dev/null; true' EXIT

proxy_conf=""
if [ -n "$proxy" ]; then
    command -v nginx >/dev/null || { echo "--proxy needs nginx (apt-get install nginx-light)" >&2; exit 1; }
    up_port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    mkdir -p "$out/upstream"
    cat > "$out/upstream/nginx.conf" <<NGINX
daemon off;
master_process off;
worker_processes 1;
pid $out/upstream/nginx.pid;
error_log $out/upstream/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $out/upstream;
    proxy_temp_path $out/upstream;
    fastcgi_temp_path $out/upstream;
    uwsgi_temp_path $out/upstream;
    scgi_temp_path $out/upstream;
    server {
        listen 127.0.0.1:$up_port;
        location / { default_type text/plain; return 200 "Hello, World!"; }
    }
}
NGINX
    nginx -c "$out/upstream/nginx.conf" &
    upstream_pid=$!
    proxy_conf="[[proxy]]
url = \"/api/\"
upstreams = [\"127.0.0.1:$up_port\"]
keepalive = $keepalive"
fi

# run NAME TOTAL_REQUESTS: one edge under callgrind serving TOTAL requests;
# writes $out/NAME/cg.<pid> and $out/NAME/roles (pid role lines).
run() {
    local name=$1 total=$2 dir="$out/$1" port
    mkdir -p "$dir"
    port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    cat > "$dir/edge.toml" <<EOF
[server]
listen = ["127.0.0.1:$port"]

[app]
module = "$app"
pythonpath = ["$here/apps"]
workers = $workers
interface = "$interface"
lifespan = "off"
venv = "$venv"

[log]
access = "off"

$proxy_conf
EOF
    # setsid: edge and its children in their own session, for the trap.
    PYTHONHASHSEED=0 setsid valgrind --tool=callgrind --callgrind-out-file="$dir/cg.%p" \
        "$edge_bin" --conf "$dir/edge.toml" > "$dir/edge.log" 2>&1 &
    edge_pid=$!
    # Ready = the front and a worker said so (no probe request: it would
    # have to be the same number in both runs).
    local i
    for i in $(seq 1 1200); do
        if grep -q "front ready" "$dir/edge.log" && grep -q "worker ready" "$dir/edge.log"; then
            break
        fi
        kill -0 "$edge_pid" 2>/dev/null || { cat "$dir/edge.log" >&2; echo "edge exited" >&2; exit 1; }
        sleep 0.1
    done
    grep -q "front ready" "$dir/edge.log" || { echo "edge not ready after 120 s" >&2; exit 1; }
    # Which pid plays which role (comm is set by edge after fork).
    : > "$dir/roles"
    local p
    for p in $(pgrep -s "$edge_pid"); do
        echo "$p $(cat /proc/$p/comm 2>/dev/null)" >> "$dir/roles"
    done
    "$python" - "$port" "$total" "$conns" "$path" <<'EOF'
import http.client, sys, threading
port, total, conns, path = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
errors = []
def client(n):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _ in range(n):
        c.request("GET", path, headers={"Host": f"127.0.0.1:{port}"})
        r = c.getresponse()
        r.read()
        if r.status != 200:
            errors.append(r.status)
    c.close()
share = [total // conns + (1 if i < total % conns else 0) for i in range(conns)]
ts = [threading.Thread(target=client, args=(n,)) for n in share]
for t in ts: t.start()
for t in ts: t.join()
if errors:
    sys.exit(f"{len(errors)} non-200 answers, e.g. {errors[0]}")
EOF
    kill -TERM "$edge_pid"
    for i in $(seq 1 600); do
        kill -0 "$edge_pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$edge_pid" 2>/dev/null; then
        echo "edge did not stop within 60 s of TERM" >&2; exit 1
    fi
    wait "$edge_pid" || true
    edge_pid=""
}

echo "callgrind: $edge_bin, app $app, GET $path, $conns connection(s)" >&2
echo "run A: $warmup requests ..." >&2
run a "$warmup"
echo "run B: $((warmup + requests)) requests ..." >&2
run b "$((warmup + requests))"
echo "$requests" > "$out/requests"  # for bench/callgrind-diff.py

"$python" - "$out" "$requests" <<'EOF'
import pathlib, re, sys
out, n = pathlib.Path(sys.argv[1]), int(sys.argv[2])

def totals(run):
    d = out / run
    roles = dict(line.split(maxsplit=1) for line in (d / "roles").read_text().split("\n") if line.strip())
    acc = {}
    for f in d.glob("cg.*"):
        pid = f.name.split(".")[1]
        m = re.search(r"^(?:summary|totals): (\d+)", f.read_text(errors="replace"), re.M)
        if not m:
            continue
        role = roles.get(pid, "?").strip()
        if role not in ("edge-front", "edge-worker", "?"):
            role = "edge (arbiter)"  # comm is valgrind's ("callgrind-amd64-")
        acc.setdefault(role, []).append(int(m.group(1)))
    return acc

a, b = totals("a"), totals("b")
print(f"| process | Ir run A | Ir run B | instructions / request |")
print(f"|---|---:|---:|---:|")
total = 0
for role in ("edge-front", "edge-worker", "edge (arbiter)"):
    if role not in a or role not in b:
        print(f"| {role} | ? | ? | missing dump |")
        continue
    ia, ib = sum(a[role]), sum(b[role])
    per = (ib - ia) / n
    if role != "edge (arbiter)":
        total += per
    print(f"| {role} | {ia:,} | {ib:,} | {per:,.0f} |")
print(f"| front + worker | | | **{total:,.0f}** |")
print(f"\n{n} requests measured (run B - run A). The arbiter does no per-request "
      "work: its line is time-driven work (startup waits, timers), i.e. the noise "
      "floor of this method, and is left out of the sum. "
      f"Files: {out}/b/cg.<pid> (callgrind_annotate), pid roles in {out}/b/roles.")
EOF
