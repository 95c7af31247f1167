#!/usr/bin/env bash
# Sets up (dependencies + build) and runs the whole test suite with CTest, in two stages:
#   1. the Release build in build/ with -Werror (QF_WERROR=OFF turns that off locally), every test;
#   2. the ASan + UBSan build in build-sanitize/ (preset `sanitize`; options in cmake/sanitizers.sh), every
#      test again. Built without -Werror: GCC 12 gives instrumented <regex> code false -Wmaybe-uninitialized
#      warnings (docs/sanitizers.md).
# CI runs this (.ci/run) and always runs both stages. QF_SANITIZE=0 skips stage 2 for a quick local run.
# env: QF_BUILD_DIR=build, QF_SANITIZE_BUILD_DIR=build-sanitize, QF_JOBS=nproc, QF_WERROR=ON,
#      QF_TEST_TIMEOUT=600 (seconds per test; the sanitizer stage allows 3x)
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${QF_JOBS:-$(nproc)}
TIMEOUT=${QF_TEST_TIMEOUT:-600}
WERROR=${QF_WERROR:-ON}
BUILD_DIR=${QF_BUILD_DIR:-build}
SAN_DIR=${QF_SANITIZE_BUILD_DIR:-build-sanitize}

stage() {  # stage NAME: prints a banner with the time since the start
  echo "run_tests: [$(($(date +%s) - T0))s] $1"
}
T0=$(date +%s)

stage "release build ($BUILD_DIR)"
QF_BUILD_DIR=$BUILD_DIR QF_BUILD_TYPE=Release \
  QF_CMAKE_ARGS="-DQF_BUILD_TESTS=ON -DQF_BUILD_BENCH=ON -DQF_WERROR=$WERROR ${QF_CMAKE_ARGS:-}" \
  bash scripts/setup.sh
stage "release tests"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$JOBS" --timeout "$TIMEOUT"

if [ "${QF_SANITIZE:-1}" = 0 ]; then
  stage "QF_SANITIZE=0: ASan + UBSan stage skipped (CI always runs it)"
  exit 0
fi
stage "ASan + UBSan build ($SAN_DIR)"
# The same settings as the `sanitize` preset of CMakePresets.json.
QF_BUILD_DIR=$SAN_DIR QF_BUILD_TYPE=RelWithDebInfo \
  QF_CMAKE_ARGS="-DQF_SANITIZE_ADDRESS=ON -DQF_SANITIZE_UNDEFINED=ON -DQF_BUILD_TESTS=ON -DQF_BUILD_BENCH=OFF \
                 -DQF_WERROR=OFF ${QF_CMAKE_ARGS:-}" \
  bash scripts/setup.sh
stage "ASan + UBSan tests"
# shellcheck source=../cmake/sanitizers.sh
source cmake/sanitizers.sh
ctest --test-dir "$SAN_DIR" --output-on-failure -j "$JOBS" --timeout $((3 * TIMEOUT))
stage "done: release and ASan + UBSan suites passed"
