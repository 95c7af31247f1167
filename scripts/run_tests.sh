#!/usr/bin/env bash
# Sets up (dependencies + build) and runs the whole test suite with CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
BUILD_DIR=${QF_BUILD_DIR:-build}
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "${QF_JOBS:-$(nproc)}" --timeout 600
