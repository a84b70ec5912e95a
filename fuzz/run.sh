#!/usr/bin/env bash
# Run every fuzz target for a bounded time:
#
#     fuzz/run.sh [SECONDS] [TARGET...]     # default 60 s each, all targets
#     fuzz/run.sh --merge [TARGET...]       # minimise new finds into the corpus
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# Inputs start from fuzz/corpus/TARGET (kept in git, small); what the fuzzer
# finds during a run goes to fuzz/target/found/TARGET, outside git, so a run
# never grows the repository. `--merge` folds those finds into the corpus
# (libFuzzer's -merge=1 keeps only inputs that add coverage).
# A crash or an invariant failure leaves its input in fuzz/artifacts/TARGET/
# and makes the script exit 1 after the other targets ran. The last lines
# print the executions per target. Targets run FUZZ_JOBS at a time (default:
# the number of CPUs; each libFuzzer process is single-threaded), so a run
# takes about SECONDS x targets / FUZZ_JOBS.
set -euo pipefail
cd "$(dirname "$0")"

# One line per target (its source is fuzz_targets/NAME.rs and it has a
# [[bin]] in Cargo.toml): adding a target is adding its name here.
TARGETS=(
  wire
  static_path
  static_plan
  config_units
  log_format
  ws_handshake
  ws_relay
  proxy_protocol
  htpasswd
  proxy_head
)

# Without sanitizers (edge's unsafe code is not on these paths; safe Rust
# needs none) and with debug assertions: twice the executions per second
# of an ASan build.
FLAGS=(--sanitizer none --debug-assertions)

merge=0
secs=60
if [ "${1:-}" = "--merge" ]; then
  merge=1
  shift
elif [ -n "${1:-}" ] && [ "${1}" -eq "${1}" ] 2>/dev/null; then
  secs=$1
  shift
fi
if [ $# -gt 0 ]; then
  TARGETS=("$@")
fi

cargo +nightly fuzz build "${FLAGS[@]}"

if [ "$merge" = 1 ]; then
  for t in "${TARGETS[@]}"; do
    mkdir -p "corpus/$t" "target/found/$t"
    cargo +nightly fuzz run "${FLAGS[@]}" "$t" "corpus/$t" "target/found/$t" -- -merge=1
  done
  exit 0
fi

# One target: its log in target/found/TARGET.log, "ok" or "FAILED" in
# target/found/TARGET.status.
fuzz_one() {
  local t=$1
  local corpus="corpus/$t" found="target/found/$t" log="target/found/$t.log"
  mkdir -p "$corpus" "$found"
  # New inputs go to the first directory ($found); the corpus is only read.
  if cargo +nightly fuzz run "${FLAGS[@]}" "$t" "$found" "$corpus" -- \
      -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
      >"$log" 2>&1; then
    echo ok >"target/found/$t.status"
  else
    echo FAILED >"target/found/$t.status"
  fi
}

jobs_max=${FUZZ_JOBS:-$(nproc)}
mkdir -p target/found
for t in "${TARGETS[@]}"; do
  rm -f "target/found/$t.status"
  while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do
    wait -n || true
  done
  fuzz_one "$t" &
done
wait

failed=()
summary=()
for t in "${TARGETS[@]}"; do
  found="target/found/$t"
  log="target/found/$t.log"
  status=$(cat "target/found/$t.status" 2>/dev/null || echo FAILED)
  if [ "$status" != ok ]; then
    failed+=("$t")
    tail -40 "$log"
  fi
  # A target that failed early has no stats: "?" (no exit under pipefail).
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
  summary+=("$(printf '%-14s %-6s %12s execs in %ss, coverage %s, %s new inputs' \
    "$t" "$status" "${execs:-?}" "$secs" "${cov:-?}" "$(ls "$found" 2>/dev/null | wc -l)")")
done

echo "== fuzz summary"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz targets failed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
