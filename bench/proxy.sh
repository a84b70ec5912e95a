#!/usr/bin/env bash
# Thin wrapper, kept for old habits: the proxy benchmark (edge [[proxy]] vs
# nginx proxy_pass to the same nginx `return 200` upstream) is the `proxy`
# scenario of bench/run now (bench/README.md).
#
#   bench/proxy.sh [EDGE_BIN] [SECONDS] [ROUNDS]   # = bench/run --only proxy ...
set -euo pipefail
args=(--only proxy)
[ $# -ge 1 ] && args+=(--edge-bin "$1")
[ $# -ge 2 ] && args+=(--duration "$2")
[ $# -ge 3 ] && args+=(--rounds "$3")
exec "$(dirname "$0")/run" "${args[@]}"
