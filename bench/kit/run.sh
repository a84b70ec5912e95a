#!/bin/sh
# edge bench kit: bench/run with everything it needs inside this folder
# (made by bench/kit/build; the manual is bench/README.md, "Many cores").
#
#   ./run.sh          # the side-by-side table: servers on the first half of
#                     # the CPUs, load on the other half, Python workers =
#                     # server CPUs; then hello-world scaling at 1, 2, 4 ...
#                     # workers (edge, granian); then one summary table
#   ./run.sh ARGS...  # one bench/run with these arguments instead (the CPU
#                     # sets are still given), e.g. --only hello-1w --workers 8
#
# Environment: SERVER_CPUS / LOAD_CPUS (taskset lists; default: halves of
# the CPUs this shell may use), WORKERS (default: the server CPU count),
# ROUNDS (2), DURATION (4 s), WARMUP (1 s), ONLY and ARMS (pass 1's
# --only / --arms), SCALING=0 (skip pass 2). Results: results/ here.
set -eu
KIT=$(cd "$(dirname "$0")" && pwd)
PYV=$(cd "$KIT/bin" && ls python3.* | head -1)

export PATH="$KIT/bin:$PATH"
export LD_LIBRARY_PATH="$KIT/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONHOME="$KIT"          # edge embeds libpython: where its stdlib is
export PYTHONPATH="$KIT/bench"    # edgebench (the harness sets its own for the arms)
export PYTHONNOUSERSITE=1
export BENCH_VENV="$KIT"          # python, granian, gunicorn ... are in bin/, packages in lib/
export BENCH_OFFLINE=1            # no apt-get, no pip
export BENCH_NGINX_MIME="$KIT/etc/nginx/mime.types"
unset VIRTUAL_ENV PYTHONSTARTUP PYTHONUSERBASE BENCH_SERVER_CPU BENCH_LOAD_CPU 2>/dev/null || true
PY="$KIT/bin/$PYV"

# Bytecode once (PYTHONDONTWRITEBYTECODE is set for the arms): a few seconds.
if [ ! -e "$KIT/.compiled" ]; then
    echo "run.sh: compiling the Python files once ..." >&2
    "$PY" -m compileall -q -j0 "$KIT/lib" "$KIT/bench" >/dev/null 2>&1 || true
    touch "$KIT/.compiled"
fi

# The CPU sets: the CPUs this process may use, first half servers, second load.
eval "$("$PY" - <<'EOF'
import os
cpus = sorted(os.sched_getaffinity(0))
def spec(cs):  # [0,1,2,5] -> "0-2,5"
    out, i = [], 0
    while i < len(cs):
        j = i
        while j + 1 < len(cs) and cs[j + 1] == cs[j] + 1:
            j += 1
        out.append(str(cs[i]) if i == j else f"{cs[i]}-{cs[j]}")
        i = j + 1
    return ",".join(out)
half = max(1, len(cpus) // 2)
print(f"DEF_SERVER={spec(cpus[:half])!r}; DEF_LOAD={spec(cpus[half:] or cpus[:1])!r}; "
      f"DEF_WORKERS={half}; NCPU={len(cpus)}")
EOF
)"
SERVER_CPUS=${SERVER_CPUS:-$DEF_SERVER}
LOAD_CPUS=${LOAD_CPUS:-$DEF_LOAD}
WORKERS=${WORKERS:-$DEF_WORKERS}
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-4}
WARMUP=${WARMUP:-1}
ONLY=${ONLY:-hello-1w,static-1k,static-64k,flask,django,asgi-hello-1w}
ARMS=${ARMS:-edge,granian,nginx,nginx return 200,nginx→gunicorn}
SCALING=${SCALING:-1}

cd "$KIT"
mkdir -p results
STAMP=$(date +%Y%m%d-%H%M%S)
echo "run.sh: $(cat KIT_INFO | head -1); $NCPU CPUs usable: servers on $SERVER_CPUS, load on $LOAD_CPUS, $WORKERS workers" >&2

bench() {  # bench NAME ARGS...: one bench/run, its report kept in results/
    name=$1; shift
    "$PY" bench/run --no-build --edge-bin "$KIT/edge" \
        --server-cpus "$SERVER_CPUS" --load-cpus "$LOAD_CPUS" "$@" || return $?
    cp bench/out/latest.md "results/$STAMP-$name.md"
    cp bench/out/latest.json "results/$STAMP-$name.json"
}

T0=$(date +%s)
if [ $# -gt 0 ]; then
    bench custom "$@"
    JSONS="results/$STAMP-custom.json"
else
    # Pass 1: issue 20's table at WORKERS workers. Pass 2: hello-world
    # scaling below it (1, 2, 4 ... workers), edge and granian only.
    # ~7 s per arm and round: pass 1 has 16 arms, pass 2 two per count.
    bench main --workers "$WORKERS" --only "$ONLY" --arms "$ARMS" \
        --rounds "$ROUNDS" --duration "$DURATION" --warmup "$WARMUP"
    JSONS="results/$STAMP-main.json"
    counts=$("$PY" -c "import sys; w=int(sys.argv[1]); print(','.join(str(2**i) for i in range(8) if 2**i < w))" "$WORKERS")
    if [ "$SCALING" = 1 ] && [ -n "$counts" ]; then
        bench scaling --workers "$counts" --only hello-1w --arms edge,granian \
            --rounds "$ROUNDS" --duration "$DURATION" --warmup "$WARMUP"
        JSONS="$JSONS results/$STAMP-scaling.json"
    fi
fi
# shellcheck disable=SC2086
"$PY" -m edgebench.summary $JSONS | tee "results/$STAMP-summary.md"
echo "run.sh: done in $(( $(date +%s) - T0 )) s; reports in $KIT/results/$STAMP-*" >&2
