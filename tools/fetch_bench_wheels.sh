#!/usr/bin/env bash
# Brings here what bench/gpu_e2e.sh needs on the GPU machine, which reaches no network:
#   .whl/    ModelOpt 0.47 and the dependencies that the GPU image (python3 3.12, torch 2.11, transformers
#            5.17) lacks, as wheels for CPython 3.12 on x86-64 (about 21 MiB);
#   .bench/  the calibration text, a tokenizer for the random model and the token ids that qforge tokenizes
#            the text into (the same ids for qforge, ModelOpt and PyTorch).
# Both folders are git-ignored through .git/info/exclude. Run it here, in the repository root or anywhere in
# the checkout, then name `.whl` and `.bench` in the device call's carry list (see bench/gpu_e2e.sh).
#
# Versions: nvidia-modelopt 0.47.0 (the newest 0.47 on PyPI), and for its needs the versions of ModelOpt's
# own uv.lock (pydantic 2.13.4, pydantic-core 2.46.4, typing-inspection 0.4.2, annotated-types 0.8.0, pulp
# 3.3.2), except omegaconf 2.4.0, which vendors antlr4 (2.3.x needs antlr4-python3-runtime 4.9.3, which PyPI
# has only as an sdist). Nothing that the image already has is brought (PyYAML, typing-extensions, numpy,
# safetensors, ... stay the image's), so /tmp/site never shadows a package torch or transformers import.
# pydantic 2.13.4 needs typing-extensions >= 4.14.1 from the image; bench/gpu_e2e.sh checks it.
#
# Usage: tools/fetch_bench_wheels.sh [--shared DIR] [--qforge BIN] [--no-data]
#   --shared DIR   the shared data folder (default: ../shared beside the checkout)
#   --qforge BIN   the qforge binary that tokenizes the text (default: build/qforge/cli/qforge)
set -euo pipefail
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
SHARED=../shared
QFB=build/qforge/cli/qforge
DATA=1
while [ $# -gt 0 ]; do
  case $1 in
    --shared) SHARED=$2; shift 2 ;;
    --qforge) QFB=$2; shift 2 ;;
    --no-data) DATA=0; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

exclude() {  # exclude /NAME/: ignore a folder through .git/info/exclude, once
  local f
  f=$(git rev-parse --git-path info/exclude)
  mkdir -p "$(dirname "$f")"
  grep -qxF "$1" "$f" 2>/dev/null || echo "$1" >>"$f"
}

WHEELS=(
  nvidia-modelopt==0.47.0
  pydantic==2.13.4
  pydantic-core==2.46.4
  typing-inspection==0.4.2
  annotated-types==0.8.0
  omegaconf==2.4.0
  pulp==3.3.2
)
exclude /.whl/
mkdir -p .whl
have() {  # have NAME==VERSION: a wheel of that name and version is already in .whl
  local n=${1%%==*} v=${1##*==}
  compgen -G ".whl/${n//-/_}-${v}-*.whl" >/dev/null
}
for w in "${WHEELS[@]}"; do
  have "$w" && continue
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$w"
done
# One version of each: two wheels of one name stop the whole install on the device.
for f in .whl/*.whl; do basename "$f" | cut -d- -f1; done | sort | uniq -d | while read -r dup; do
  echo "error: .whl holds two versions of $dup; remove the one not listed in $0" >&2
  exit 1
done
# Every Requires-Dist (extras aside) is either brought here or already in the GPU image.
echo "wheels in .whl ($(du -sh .whl | cut -f1)):"
for f in .whl/*.whl; do
  printf '  %s\n' "$(basename "$f")"
  unzip -p "$f" '*.dist-info/METADATA' | { grep '^Requires-Dist' || true; } | { grep -v 'extra ==' || true; } | sed 's/^/      /'
done

[ $DATA = 1 ] || exit 0
# Calibration data: wikitext-2's test split (355k tokens with llama-dense-26M's 8192-token BPE, more than
# 512 x 512) and that tokenizer, which the random 128256-vocab model accepts (its ids are < 8192).
exclude /.bench/
mkdir -p .bench
TEXT=$SHARED/data/text/wikitext2/wiki.test.txt
TOK=$SHARED/data/models/llama-dense-26M
for f in "$TEXT" "$TOK/tokenizer.json" "$TOK/tokenizer_config.json"; do
  [ -f "$f" ] || { echo "error: $f not found (give --shared DIR)" >&2; exit 1; }
done
cp -f "$TEXT" .bench/calib.txt
cp -f "$TOK/tokenizer.json" "$TOK/tokenizer_config.json" .bench/
chmod u+w .bench/*
# The ids qforge cuts its calibration samples from (whole text, no BOS): used on the device only when no
# qforge binary is there to tokenize the text itself.
if [ -x "$QFB" ]; then
  "$QFB" tokenize --model .bench/tokenizer.json --text .bench/calib.txt >.bench/calib_ids.txt
  echo "bench data in .bench ($(du -sh .bench | cut -f1)): $(wc -w <.bench/calib_ids.txt) token ids"
else
  echo "bench data in .bench ($(du -sh .bench | cut -f1)); no $QFB, so no calib_ids.txt (the device tokenizes)"
fi
