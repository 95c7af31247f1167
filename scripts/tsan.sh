#!/usr/bin/env bash
# ThreadSanitizer on the threaded CPU kernels (runtime/cpu: OpenMP). GCC's libgomp is not instrumented and
# gives TSan false positives, so this builds with clang-14 and LLVM's libomp, whose OMPT interface lets
# Archer (libarcher.so, from libomp-14-dev) tell TSan about OpenMP's barriers, tasks and reductions.
# Builds the preset `tsan` in build-tsan/ and runs the test binaries, each with several OpenMP thread counts.
# Usage: bash scripts/tsan.sh [TEST_BINARY_NAME...]     (default: qforge_runtime_tests; e.g. also
#        qforge_model_tests qforge_quant_tests for the forward pass and calibration on top of the kernels)
# env: QF_TSAN_BUILD_DIR=build-tsan, QF_JOBS=nproc, QF_TSAN_THREADS="2 4 7" (OMP_NUM_THREADS of each run),
#      GTEST_FILTER as usual. Not part of CI (docs/sanitizers.md).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${QF_TSAN_BUILD_DIR:-build-tsan}
JOBS=${QF_JOBS:-$(nproc)}
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(qforge_runtime_tests)

QF_EXTRA_PKGS="clang-14 libomp-14-dev libclang-rt-14-dev ${QF_EXTRA_PKGS:-}" bash scripts/setup.sh --packages-only
ARCHER=$(ls /usr/lib/llvm-14/lib/libarcher.so 2>/dev/null || true)
[ -n "$ARCHER" ] || { echo "tsan: /usr/lib/llvm-14/lib/libarcher.so not found (libomp-14-dev)" >&2; exit 1; }

# The same settings as the `tsan` preset of CMakePresets.json.
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang-14 \
  -DCMAKE_CXX_COMPILER=clang++-14 -DQF_SANITIZE_THREAD=ON -DQF_BUILD_TESTS=ON -DQF_BUILD_BENCH=OFF \
  ${QF_CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD_DIR" -j "$JOBS" --target "${TARGETS[@]}"

# shellcheck source=../cmake/sanitizers.sh
source cmake/sanitizers.sh
# Archer: the OpenMP happens-before edges. OpenBLAS's own threads are not instrumented (their accesses are
# invisible to TSan), so BLAS runs single-threaded here; the OpenMP kernels are what is checked.
export OMP_TOOL_LIBRARIES=$ARCHER ARCHER_OPTIONS=${ARCHER_OPTIONS:-verbose=1}
export OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=passive QF_PROGRESS=0
status=0
for t in "${TARGETS[@]}"; do
  bin=$(find "$BUILD_DIR" -type f -name "$t" -perm -u+x | head -1)
  [ -n "$bin" ] || { echo "tsan: no binary $t in $BUILD_DIR" >&2; exit 1; }
  for n in ${QF_TSAN_THREADS:-2 4 7}; do
    echo "tsan: $t with OMP_NUM_THREADS=$n"
    if ! OMP_NUM_THREADS=$n "$bin" --gtest_brief=1; then
      echo "tsan: FAIL $t (OMP_NUM_THREADS=$n)"
      status=1
    fi
  done
done
[ $status -eq 0 ] && echo "tsan: no data race reported (${TARGETS[*]})"
exit $status
