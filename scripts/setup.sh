#!/usr/bin/env bash
# Installs qforge's build dependencies from Debian's packages (idempotent) and builds it in build/.
# Usage: bash scripts/setup.sh        (env: QF_BUILD_DIR=build, QF_BUILD_TYPE=Release, QF_JOBS=nproc)
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential cmake pkg-config git
      libgtest-dev libgmock-dev libbenchmark-dev
      nlohmann-json3-dev libyaml-cpp-dev libopenblas-dev libhwy-dev libpcre2-dev
      libcli11-dev libfmt-dev libspdlog-dev libxxhash-dev)

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

BUILD_DIR=${QF_BUILD_DIR:-build}
BUILD_TYPE=${QF_BUILD_TYPE:-Release}
JOBS=${QF_JOBS:-$(nproc)}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="$BUILD_TYPE" ${QF_CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD_DIR" -j "$JOBS"
echo "setup: built $BUILD_DIR/qforge/cli/qforge"
