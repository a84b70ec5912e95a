#!/usr/bin/env bash
# edge [[proxy]] against nginx proxy_pass, side by side, to the same
# static-answering upstream (an nginx `return 200`). Self-contained: the
# lead ports it into bench/edgebench/ as a scenario with two arms.
#
#   bench/proxy.sh [EDGE_BIN] [SECONDS] [ROUNDS]
#
# Both proxies: one process/thread pinned to BENCH_SERVER_CPU (default 0),
# keep-alive to the upstream (nginx `keepalive N`, edge `keepalive = N`,
# N = BENCH_KEEPALIVE, default 32),
# X-Forwarded-* set, access logs off; wrk pinned to BENCH_LOAD_CPU (default
# 1), 64 connections. Arms alternate per round. Prints req/s and p99.
set -euo pipefail
EDGE=${1:-target/release/edge}
SECS=${2:-10}
ROUNDS=${3:-2}
SCPU=${BENCH_SERVER_CPU:-0}
LCPU=${BENCH_LOAD_CPU:-1}
CONNS=${BENCH_CONNECTIONS:-64}
KEEP=${BENCH_KEEPALIVE:-32}   # idle upstream connections kept, both arms
command -v nginx >/dev/null || NGINX=/usr/sbin/nginx
NGINX=${NGINX:-$(command -v nginx)}
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)"; exit 1; }
[ -x "$EDGE" ] || { echo "no $EDGE (cargo build --release)"; exit 1; }
EDGE=$(realpath "$EDGE")
REPO=$(cd "$(dirname "$0")/.." && pwd)
D=$(mktemp -d /tmp/edge-proxy-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$D"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(port); NG=$(port); ED=$(port)

nginx_conf() { # name body
  mkdir -p "$D/$1"
  cat > "$D/$1/nginx.conf" <<NGX
daemon off; master_process off; worker_processes 1;
pid $D/$1/nginx.pid; error_log $D/$1/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $D/$1; proxy_temp_path $D/$1; fastcgi_temp_path $D/$1;
  uwsgi_temp_path $D/$1; scgi_temp_path $D/$1;
  $2
}
NGX
}
nginx_conf upstream "server { listen 127.0.0.1:$UP; location / { return 200 \"hello world\n\"; } }"
nginx_conf proxy "upstream up { server 127.0.0.1:$UP; keepalive $KEEP; }
  server { listen 127.0.0.1:$NG; location /api/ {
    proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\";
    proxy_set_header Host \$host; proxy_set_header X-Forwarded-For \$remote_addr;
    proxy_set_header X-Forwarded-Proto \$scheme; proxy_set_header X-Forwarded-Host \$host; } }"
cat > "$D/edge.toml" <<TOML
[server]
listen = ["127.0.0.1:$ED"]
[app]
module = "hello:app"
pythonpath = ["$REPO/bench/apps"]
workers = 1
[log]
access = "off"
[[proxy]]
url = "/api/"
upstreams = ["127.0.0.1:$UP"]
keepalive = $KEEP
TOML

taskset -c "$SCPU" "$NGINX" -c "$D/upstream/nginx.conf" -p "$D/upstream" & PIDS+=($!)
taskset -c "$SCPU" "$NGINX" -c "$D/proxy/nginx.conf" -p "$D/proxy" & PIDS+=($!)
taskset -c "$SCPU" "$EDGE" --conf "$D/edge.toml" >"$D/edge.log" 2>&1 & PIDS+=($!)
for p in $UP $NG $ED; do
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$p/api/" && break; sleep 0.1; done
done
curl -sf "http://127.0.0.1:$ED/api/" >/dev/null || { cat "$D/edge.log"; exit 1; }

run() { # port -> "rps p99"
  taskset -c "$LCPU" wrk -t1 -c"$CONNS" -d"${SECS}s" --latency "http://127.0.0.1:$1/api/" > "$D/wrk.out"
  local rps p99
  rps=$(awk '/Requests\/sec/ {print $2}' "$D/wrk.out")
  p99=$(awk '$1=="99%" {print $2}' "$D/wrk.out")
  echo "$rps $p99"
}
taskset -c "$LCPU" wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$NG/api/" >/dev/null
taskset -c "$LCPU" wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$ED/api/" >/dev/null
printf "%-6s %-22s %12s %10s\n" round arm "req/s" p99
for r in $(seq "$ROUNDS"); do
  read -r a b <<<"$(run "$NG")"; printf "%-6s %-22s %12s %10s\n" "$r" "nginx proxy_pass" "$a" "$b"
  read -r a b <<<"$(run "$ED")"; printf "%-6s %-22s %12s %10s\n" "$r" "edge [[proxy]]" "$a" "$b"
done
