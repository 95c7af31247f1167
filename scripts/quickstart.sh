#!/usr/bin/env bash
# The main job: sets up qforge (dependencies + a build of the qforge CLI only, no tests or benchmarks),
# quantizes llama-dense-26M to NVFP4 (W4A4, FP8 KV cache) with max calibration on Jane Austen (32 x 512
# tokens), checks the checkpoint against the runtime contract and evaluates perplexity on Persuasion before
# and after.
# Usage: bash scripts/quickstart.sh [OUT_DIR]      (default: out/llama-dense-26M-nvfp4)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --cli
QF=${QF_BUILD_DIR:-build}/qforge/cli/qforge
SHARED=${QF_SHARED_DIR:-../shared}
MODEL=$SHARED/data/models/llama-dense-26M
OUT=${1:-out/llama-dense-26M-nvfp4}
mkdir -p "$(dirname "$OUT")"

"$QF" quantize --model "$MODEL" --recipe general/ptq/nvfp4_default-kv_fp8 \
  --calib "$SHARED/data/text/janeausten/sensesensibility.txt" "$SHARED/data/text/janeausten/emma.txt" \
  --calib-size 32 --calib-seq-len 512 --batch-size 8 --export "$OUT" --overwrite
"$QF" check "$OUT"
echo "perplexity on Persuasion (first 4096 predicted tokens), original then quantized:"
"$QF" eval --model "$MODEL" --text "$SHARED/data/text/janeausten/persuasion.txt" --max-tokens 4096 | tail -1
"$QF" eval --model "$OUT" --text "$SHARED/data/text/janeausten/persuasion.txt" --max-tokens 4096 | tail -1
