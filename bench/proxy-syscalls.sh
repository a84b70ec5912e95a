#!/usr/bin/env bash
# Per-request system calls, context switches and CPU of the process that
# proxies, for edge's [[proxy]] and for nginx proxy_pass, under the same
# load as bench/run's `proxy` scenario (an nginx `return 200` upstream,
# `keepalive 32`, 64 wrk connections; server and upstream on CPU 0, wrk on
# CPU 1). Counts come from `perf stat` on syscall tracepoints, over a
# window in the middle of the load: they say where the two differ (which
# calls, how many per request), not how fast either is.
#
#   bench/proxy-syscalls.sh [--edge-bin PATH] [--seconds N] [--keepalive N]
#
# --keepalive N sets both servers' kept upstream connections (default 32;
# 128 leaves no reconnects with 64 clients). Context switches are split
# into voluntary (the process waited) and involuntary (the scheduler took
# the CPU, e.g. for the upstream sharing CPU 0), from /proc/PID/status.
#
# Needs perf (with tracepoints), nginx, wrk, curl, and a release build
# (default $CARGO_TARGET_DIR/release/edge, else target/release/edge).
# Prints one table; the run's files stay in bench/out/proxy-syscalls/.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
edge_bin="${CARGO_TARGET_DIR:-$repo/target}/release/edge"
secs=5
keepalive=32
while [ $# -gt 0 ]; do
    case "$1" in
        --edge-bin) edge_bin=$2; shift 2 ;;
        --seconds) secs=$2; shift 2 ;;
        --keepalive) keepalive=$2; shift 2 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
for tool in perf nginx wrk curl taskset; do
    command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 2; }
done
[ -x "$edge_bin" ] || { echo "no edge binary at $edge_bin (cargo build --release)" >&2; exit 2; }

out="$here/out/proxy-syscalls"
rm -rf "$out"
mkdir -p "$out"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# An nginx config in $out/$1 with `server` blocks $2.
nginx_conf() {
    local dir="$out/$1"
    mkdir -p "$dir"/{client_body,proxy,fastcgi,uwsgi,scgi}
    cat > "$dir/nginx.conf" <<EOF
worker_processes 1; daemon off; master_process on;
pid $dir/nginx.pid; error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off; tcp_nodelay on;
    client_body_temp_path $dir/client_body; proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi; uwsgi_temp_path $dir/uwsgi; scgi_temp_path $dir/scgi;
$2
}
EOF
    echo "$dir/nginx.conf"
}

# Start a server in the background (pinned to CPU 0) and remember its pid.
spawn() {
    taskset -c 0 "$@" > "$out/$(basename "$1").$RANDOM.log" 2>&1 &
    pids+=($!)
}

wait_200() {
    for _ in $(seq 100); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/api/")" = 200 ] && return 0
        sleep 0.1
    done
    echo "no 200 from port $1" >&2
    exit 1
}

EVENTS=""
for s in epoll_wait epoll_ctl recvfrom writev socket connect setsockopt getsockopt shutdown close; do
    EVENTS+="syscalls:sys_enter_$s,"
done
EVENTS+="context-switches,task-clock"

# measure LABEL PID PORT: perf on PID during the middle of a wrk run.
measure() {
    local label=$1 pid=$2 port=$3
    taskset -c 1 wrk -t1 -c64 -d"$((secs + 4))s" "http://127.0.0.1:$port/api/" > "$out/wrk-$label.txt" &
    local wrk=$!
    sleep 2
    grep ctxt_switches "/proc/$pid/status" > "$out/ctx-before-$label"
    perf stat -x, -e "$EVENTS" -p "$pid" -o "$out/perf-$label.csv" -- sleep "$secs"
    grep ctxt_switches "/proc/$pid/status" > "$out/ctx-after-$label"
    wait "$wrk"
}

up=$(free_port)
spawn nginx -c "$(nginx_conf upstream "server { listen 127.0.0.1:$up; location / { default_type text/plain; return 200 \"Hello, World!\"; } }")"

# edge: the front process (its pid from the "front ready" line).
edge_port=$(free_port)
cat > "$out/edge.toml" <<EOF
[server]
listen = ["127.0.0.1:$edge_port"]
[app]
module = "hello:app"
pythonpath = ["$here/apps"]
workers = 1
[log]
access = "off"
[[proxy]]
url = "/api/"
upstreams = ["127.0.0.1:$up"]
keepalive = $keepalive
EOF
taskset -c 0 "$edge_bin" --conf "$out/edge.toml" > "$out/edge.log" 2>&1 &
edge_pid=$!
pids+=($edge_pid)
wait_200 "$edge_port"
front=$(grep -o 'front ready pid=[0-9]*' "$out/edge.log" | head -1 | grep -o '[0-9]*$')
measure edge "$front" "$edge_port"
kill "$edge_pid"

# nginx proxy_pass: its one worker process.
ngx_port=$(free_port)
conf=$(nginx_conf proxy "
    upstream up { server 127.0.0.1:$up; keepalive $keepalive; }
    server {
        listen 127.0.0.1:$ngx_port;
        location /api/ {
            proxy_pass http://up; proxy_http_version 1.1;
            proxy_set_header Connection \"\"; proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$host;
        }
    }")
spawn nginx -c "$conf"
ngx_master=${pids[-1]}
wait_200 "$ngx_port"
worker=$(pgrep -P "$ngx_master" | head -1)
measure nginx "$worker" "$ngx_port"

# One table: per request, requests = wrk's rate x the window.
python3 - "$out" "$secs" <<'EOF'
import csv, re, sys
out, secs = sys.argv[1], float(sys.argv[2])
rows, arms = {}, ["edge", "nginx"]
for arm in arms:
    rate = float(re.search(r"Requests/sec:\s*([\d.]+)", open(f"{out}/wrk-{arm}.txt").read()).group(1))
    n = rate * secs
    for r in csv.reader(l for l in open(f"{out}/perf-{arm}.csv") if l.strip() and not l.startswith("#")):
        if len(r) < 3 or not r[0].replace(".", "").isdigit():
            continue
        name = r[2].replace("syscalls:sys_enter_", "")
        v = float(r[0])
        if name == "task-clock":  # msec
            rows.setdefault("CPU µs", {})[arm] = v * 1000 / n
        else:
            rows.setdefault(name, {})[arm] = v / n
    before = dict(l.split(":") for l in open(f"{out}/ctx-before-{arm}"))
    after = dict(l.split(":") for l in open(f"{out}/ctx-after-{arm}"))
    for k in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
        name = "  voluntary" if k.startswith("vol") else "  involuntary"
        rows.setdefault(name, {})[arm] = (int(after[k]) - int(before[k])) / n
    rows.setdefault("req/s (wrk)", {})[arm] = rate
print(f"| per request | {' | '.join(arms)} |")
print("|---|" + "---:|" * len(arms))
for name, v in rows.items():
    fmt = "{:,.0f}" if name.startswith("req/s") else "{:.2f}"
    print(f"| {name} | " + " | ".join(fmt.format(v.get(a, 0)) for a in arms) + " |")
EOF
