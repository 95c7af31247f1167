#!/usr/bin/env bash
# Builds the libFuzzer harnesses of tests/fuzz/ in build-fuzz/ (clang 14, ASan + UBSan + libFuzzer), writes
# their seed corpora from ../shared and the goldens, and runs each harness for a fixed time.
# Usage: bash scripts/fuzz.sh [SECONDS_PER_FUZZER] [HARNESS...]
#   SECONDS_PER_FUZZER  default 900; 0 builds and writes the seeds only
#   HARNESS             a subset, e.g. check_fuzzer tokenizer_fuzzer (default: all six)
# env: QF_FUZZ_JOBS=2 harnesses run at once (each single-threaded, under nice -n 19),
#      QF_FUZZ_DIR=build-fuzz, QF_FUZZ_ARGS (more libFuzzer flags), QF_JOBS (build parallelism, default nproc).
# Each run keeps its growing corpus in $QF_FUZZ_DIR/corpus/<harness>/ (reused by the next run), writes
# crash-* / oom-* / timeout-* reproducers into $QF_FUZZ_DIR/artifacts/<harness>/ and its log into
# $QF_FUZZ_DIR/logs/<harness>.log; a summary line per harness (executions, exec/s, cov, ft, crashes) ends the
# output. Exit status 1 if any harness found a crash.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER=${1:-900}
shift || true
ALL=(safetensors_fuzzer model_config_fuzzer recipe_fuzzer tokenizer_fuzzer quant_cfg_fuzzer check_fuzzer)
if [ $# -gt 0 ]; then HARNESSES=("$@"); else HARNESSES=("${ALL[@]}"); fi
DIR=${QF_FUZZ_DIR:-build-fuzz}
JOBS=${QF_FUZZ_JOBS:-2}

# clang 14 with libFuzzer and the sanitizer runtimes, LLVM's OpenMP (what clang links with -fopenmp).
QF_EXTRA_PKGS="clang-14 libclang-rt-14-dev libomp-14-dev ${QF_EXTRA_PKGS:-}" bash scripts/setup.sh --packages-only

if [ ! -f "$DIR/CMakeCache.txt" ]; then
  cmake -S . -B "$DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
    -DQF_BUILD_FUZZERS=ON -DQF_BUILD_TESTS=OFF -DQF_BUILD_BENCH=OFF
fi
nice -n 19 cmake --build "$DIR" --target fuzzers -j "${QF_JOBS:-$(nproc)}"

mkdir -p "$DIR/seeds" "$DIR/corpus" "$DIR/artifacts" "$DIR/logs"
"$DIR/tests/fuzz/fuzz_seeds" "$DIR/seeds"
[ "$SECONDS_PER" -gt 0 ] || exit 0

# The leak checker would flag the process-wide caches some parsers keep; memory per input is bounded by
# -rss_limit_mb / -malloc_limit_mb instead (an allocation above 2 GB is reported as a crash).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

run_one() {
  local h=$1
  mkdir -p "$DIR/corpus/$h" "$DIR/artifacts/$h"
  # shellcheck disable=SC2086
  nice -n 19 "$DIR/tests/fuzz/$h" "$DIR/corpus/$h" "$DIR/seeds/$h" -max_total_time="$SECONDS_PER" \
    -print_final_stats=1 -timeout=60 -rss_limit_mb=2560 -malloc_limit_mb=2048 -max_len=1048576 \
    -artifact_prefix="$DIR/artifacts/$h/" ${QF_FUZZ_ARGS:-} >"$DIR/logs/$h.log" 2>&1 || true
}

touch "$DIR/logs/.started"
running=0
for h in "${HARNESSES[@]}"; do
  echo "fuzz: $h for ${SECONDS_PER}s (log $DIR/logs/$h.log)"
  run_one "$h" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then
    wait -n
    running=$((running - 1))
  fi
done
wait
# libFuzzer leaves through _Exit, so the harnesses' scratch dirs (fuzz_util.h) stay: remove those of dead pids.
for d in /dev/shm/qforge-fuzz.* "${TMPDIR:-/tmp}"/qforge-fuzz.*; do
  [ -d "$d" ] && ! kill -0 "${d##*.}" 2>/dev/null && rm -rf "$d"
done

status=0
printf '%-22s %12s %9s %8s %8s %8s\n' harness executions exec/s cov ft crashes
for h in "${HARNESSES[@]}"; do
  log="$DIR/logs/$h.log"
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  last=$(grep -E '^#[0-9]+' "$log" | grep -E ' cov: ' | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  crashes=$(find "$DIR/artifacts/$h" -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' \
    -o -name 'leak-*' \) -newer "$DIR/logs/.started" 2>/dev/null | wc -l)
  printf '%-22s %12s %9s %8s %8s %8s\n' "$h" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "$crashes"
  [ "$crashes" -eq 0 ] || status=1
done
exit $status
