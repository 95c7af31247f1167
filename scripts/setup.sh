#!/usr/bin/env bash
# Installs qforge's build dependencies from Debian's packages (idempotent) and builds it in build/.
# Usage: bash scripts/setup.sh [--cli | --packages-only]
#   (no flag)        everything: libraries, the qforge CLI, tests and benchmarks (scripts/run_tests.sh)
#   --cli            only the qforge CLI (scripts/quickstart.sh): no test binaries, no benchmarks; a fresh build
#                    dir is configured with QF_BUILD_TESTS=OFF and QF_BUILD_BENCH=OFF
#   --packages-only  installs the packages and builds nothing
# env: QF_BUILD_DIR=build, QF_BUILD_TYPE=Release, QF_JOBS=nproc, QF_CMAKE_ARGS (more cmake -D arguments),
#      QF_EXTRA_PKGS (more Debian packages, e.g. "clang-14 libomp-14-dev" for scripts/tsan.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=all
case "${1:-}" in
  "") ;;
  --cli) MODE=cli ;;
  --packages-only) MODE=packages ;;
  *) echo "setup: unknown argument '$1' (--cli or --packages-only)" >&2; exit 2 ;;
esac

PKGS=(build-essential cmake pkg-config git
      nlohmann-json3-dev libyaml-cpp-dev libopenblas-dev libhwy-dev libpcre2-dev
      libcli11-dev libfmt-dev libspdlog-dev libxxhash-dev)
# Tests and benchmarks (CMake finds them only when QF_BUILD_TESTS / QF_BUILD_BENCH are on); python3 runs
# the end-to-end shell tests' JSON checks.
[ "$MODE" = cli ] || PKGS+=(libgtest-dev libgmock-dev libbenchmark-dev python3)
# shellcheck disable=SC2206
PKGS+=(${QF_EXTRA_PKGS:-})

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
[ "$MODE" = packages ] && exit 0

BUILD_DIR=${QF_BUILD_DIR:-build}
BUILD_TYPE=${QF_BUILD_TYPE:-Release}
JOBS=${QF_JOBS:-$(nproc)}
args=(-DCMAKE_BUILD_TYPE="$BUILD_TYPE")
target=()
if [ "$MODE" = cli ]; then
  # A build dir that already has tests configured (run_tests.sh) keeps them; only the CLI is built either way.
  [ -f "$BUILD_DIR/CMakeCache.txt" ] || args+=(-DQF_BUILD_TESTS=OFF -DQF_BUILD_BENCH=OFF)
  target=(--target qforge)
fi
# shellcheck disable=SC2086
cmake -S . -B "$BUILD_DIR" "${args[@]}" ${QF_CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD_DIR" -j "$JOBS" "${target[@]}"
echo "setup: built $BUILD_DIR/qforge/cli/qforge"
