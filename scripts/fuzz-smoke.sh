#!/usr/bin/env bash
# Fuzz smoke (RELIABILITY.md G9): builds every cargo-fuzz target in fuzz/ once, on stable without
# a sanitizer, replays every input in fuzz/regressions/<target>/, then fuzzes each target for
# FUZZ_SECONDS (default 10) from its committed corpus. Fails when any target crashes, panics,
# times out (10 s on one input) or goes over 2 GiB of RSS; the input is kept in
# fuzz/artifacts/<target>/. One summary line per target.
#
# Environment: FUZZ_SECONDS (per target, default 10), FUZZ_JOBS (targets fuzzed at once,
# default 2), FUZZ_TARGETS (space-separated subset; default all), FUZZ_CODEGEN_UNITS (default 16).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-10}"
jobs="${FUZZ_JOBS:-2}"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

echo "== building the fuzz targets (release with debug assertions, no sanitizer)"
start=$(date +%s)
# -O: assertions and overflow checks come from fuzz/Cargo.toml's profile (see fuzz/README.md).
# fuzz/target whatever CARGO_TARGET_DIR says: the RUSTFLAGS differ from the workspace's.
# 16 codegen units instead of cargo-fuzz's 1: a much shorter cold build, for a few percent fewer
# executions per second.
cargo fuzz build -O -s none --codegen-units "${FUZZ_CODEGEN_UNITS:-16}" --target-dir fuzz/target
echo "built in $(($(date +%s) - start)) s"
# The fuzz workspace has its own lock file; the build must not have changed it.
if ! git diff --exit-code --quiet -- fuzz/Cargo.lock; then
  echo "fuzz/Cargo.lock is out of date: run cargo fuzz build -O and commit it"
  exit 1
fi

bin_dir=fuzz/target/x86_64-unknown-linux-gnu/release
targets="${FUZZ_TARGETS:-$(cargo fuzz list)}"
results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
flags=(-timeout=10 -rss_limit_mb=2048 -print_final_stats=1)

run_one() {
  local t="$1"
  local art="fuzz/artifacts/$t" work="$results/work/$t" log="$results/$t.log" rc=0 why=""
  mkdir -p "$art" "$work"
  local regressions=()
  if [ -d "fuzz/regressions/$t" ]; then
    mapfile -t regressions < <(find "fuzz/regressions/$t" -type f | sort)
  fi
  # Every input that once crashed, once each.
  if [ "${#regressions[@]}" -gt 0 ]; then
    "$bin_dir/$t" "${flags[@]}" -artifact_prefix="$art/" "${regressions[@]}" >"$log.reg" 2>&1 || {
      rc=$?
      why="a regression input fails again"
      cat "$log.reg" >"$log"
    }
  fi
  # Then fuzz; new inputs go to the scratch directory (first), never into the committed corpus.
  if [ "$rc" -eq 0 ]; then
    local dirs=("$work")
    [ -d "fuzz/corpus/$t" ] && dirs+=("fuzz/corpus/$t")
    "$bin_dir/$t" "${flags[@]}" -max_total_time="$seconds" -artifact_prefix="$art/" \
      "${dirs[@]}" >"$log" 2>&1 || rc=$?
  fi
  local runs cov
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n1 | cut -d' ' -f2 || true)
  if [ "$rc" -eq 0 ]; then
    printf 'fuzz-smoke: %-14s ok    %9s runs in %ss, %3d regressions replayed, coverage %s\n' \
      "$t" "${runs:-?}" "$seconds" "${#regressions[@]}" "${cov:-?}"
  else
    [ -n "$why" ] || why=$(grep -m1 -o 'ERROR: libFuzzer: [a-z-]*\|panicked at .*' "$log" || echo "exit $rc")
    printf 'fuzz-smoke: %-14s FAIL  %s (input kept in %s)\n' "$t" "$why" "$art"
    tail -n 40 "$log" | sed "s/^/  $t | /"
    touch "$results/$t.failed"
  fi
}
export -f run_one
export results bin_dir seconds
export FLAGS_STR="${flags[*]}"

echo "== replaying regressions, then fuzzing each target for ${seconds}s ($jobs at a time)"
# shellcheck disable=SC2086
printf '%s\n' $targets | xargs -P "$jobs" -I{} bash -c 'flags=($FLAGS_STR); run_one "$1"' _ {}

# shellcheck disable=SC2086
total=$(printf '%s\n' $targets | wc -l)
failed=$(find "$results" -maxdepth 1 -name '*.failed' | wc -l)
echo "fuzz-smoke: $((total - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
