#!/usr/bin/env bash
# Builds qforge with the CUDA backend in build-cuda/ and gathers what a GPU machine needs to run it into
# .gpu/ (git-ignored): the stripped binaries, the shared libraries they load that such a machine lacks,
# and run.sh, which runs a binary with those libraries.
#
#   scripts/build_cuda.sh [target...]     default targets: qforge qforge_backend_consistency_tests
#   .gpu/run.sh .gpu/qforge_backend_consistency_tests     (on the GPU machine)
#
# A GPU machine has the CUDA runtime, cuBLAS(Lt), cuDNN, the driver and a C/C++ runtime (glibc,
# libstdc++, libgcc_s), and none of the Debian libraries qforge links (fmt, yaml-cpp, OpenBLAS, Highway,
# PCRE2, xxhash, libgomp, gfortran, ...): every library `ldd` lists that is not one of the former is
# copied into .gpu/lib. Libraries above 8 MiB (OpenBLAS) are stored xz-compressed and unpacked by run.sh
# on first use, which keeps .gpu/ small enough to travel with the working tree.
#
# Environment: QF_CMAKE_ARGS (extra configure arguments, e.g. -DCMAKE_CXX_COMPILER_LAUNCHER=ccache
# -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache), QF_JOBS (parallel build jobs, default 2), CUDACXX (nvcc; default
# /usr/local/cuda/bin/nvcc when present).
set -euo pipefail
cd "$(dirname "$0")/.."

build=build-cuda
out=.gpu
jobs=${QF_JOBS:-2}
if [ $# -gt 0 ]; then targets=("$@"); else targets=(qforge qforge_backend_consistency_tests); fi
if [ -z "${CUDACXX:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then export CUDACXX=/usr/local/cuda/bin/nvcc; fi

# shellcheck disable=SC2086  # QF_CMAKE_ARGS is a list of arguments
cmake -S . -B "$build" -DQF_ENABLE_CUDA=ON -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 ${QF_CMAKE_ARGS:-}
cmake --build "$build" -j"$jobs" --target "${targets[@]}"

rm -rf "$out"
mkdir -p "$out/lib"
bins=()
for t in "${targets[@]}"; do
  bin=$(find "$build" -type f -name "$t" -perm -u+x -not -path '*/CMakeFiles/*' | head -n 1)
  if [ -z "$bin" ]; then
    echo "build_cuda.sh: built target $t but found no executable named $t under $build" >&2
    exit 1
  fi
  strip --strip-unneeded -o "$out/$t" "$bin"
  bins+=("$out/$t")
done

# What the GPU machine provides itself (matched against the library's file name).
provided='^(linux-vdso|ld-linux|libc|libm|libdl|librt|libpthread|libresolv|libutil|libstdc\+\+|libgcc_s|libcuda|libcudart|libcublas|libcublasLt|libcudnn[a-z_]*|libnvidia-[a-z_-]*|libnvrtc|libnvJitLink)\.so'
for b in "${bins[@]}"; do
  ldd "$b" | awk '/=>/ { print $1, $3 }' | while read -r name path; do
    if echo "$name" | grep -Eq "$provided"; then continue; fi
    if [ "$path" = "not" ] || [ ! -e "$path" ]; then
      echo "build_cuda.sh: $b needs $name, which ldd cannot find here" >&2
      exit 1
    fi
    if [ ! -e "$out/lib/$name" ] && [ ! -e "$out/lib/$name.xz" ]; then
      cp -L "$path" "$out/lib/$name"
      strip --strip-unneeded "$out/lib/$name" 2>/dev/null || true
      if [ "$(stat -c %s "$out/lib/$name")" -gt $((8 << 20)) ]; then xz -T2 -6 "$out/lib/$name"; fi
    fi
  done
done

cat >"$out/run.sh" <<'EOF'
#!/usr/bin/env bash
# Runs a qforge binary of this folder with the libraries gathered next to it (scripts/build_cuda.sh).
#   .gpu/run.sh .gpu/qforge_backend_consistency_tests [gtest flags]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
for f in "$here"/lib/*.xz; do
  [ -e "$f" ] || continue
  if [ ! -e "${f%.xz}" ]; then
    if command -v xz >/dev/null; then
      xz -dc "$f" >"${f%.xz}.part"
    else
      python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
        "$f" "${f%.xz}.part"
    fi
    mv "${f%.xz}.part" "${f%.xz}"
  fi
done
export LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}:/usr/local/cuda/lib64"
exec "$@"
EOF
chmod +x "$out/run.sh"

echo "build_cuda.sh: $out/ ($(du -sh "$out" | cut -f1)):"
ls -la "$out" "$out/lib"
