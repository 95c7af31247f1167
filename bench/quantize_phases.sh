#!/usr/bin/env bash
# Times `qforge quantize` of llama-dense-26M (32 x 512 calibration tokens, NVFP4 + FP8 KV) phase by phase,
# beside the baseline of a plain forward pass over the same number of tokens measured in the same run
# (`qforge eval`), and reports peak RSS. Bar: end to end under 20 s on 2 cores.
# Usage: bash bench/quantize_phases.sh [path/to/qforge] [recipe]
set -euo pipefail
cd "$(dirname "$0")/.."
QF=${1:-build/qforge/cli/qforge}
RECIPE=${2:-general/ptq/nvfp4_default-kv_fp8}
SHARED=${QF_SHARED_DIR:-../shared}
MODEL=$SHARED/data/models/llama-dense-26M
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
export QF_PROGRESS=0

start=$(date +%s.%N)
"$QF" quantize --model "$MODEL" --recipe "$RECIPE" \
  --calib "$SHARED/data/text/janeausten/sensesensibility.txt" "$SHARED/data/text/janeausten/emma.txt" \
  --calib-size 32 --calib-seq-len 512 --batch-size 8 --export "$OUT/q" --overwrite > "$OUT/log" 2>&1
end=$(date +%s.%N)
grep -E "^time:|^peak RSS" "$OUT/log"
total=$(awk "BEGIN {print $end - $start}")

# Baseline: a forward pass over 32 x 512 tokens (perplexity eval computes the same decoder forward).
start=$(date +%s.%N)
"$QF" eval --model "$MODEL" --text "$SHARED/data/text/janeausten/emma.txt" --max-tokens 16384 --batch-size 8 > "$OUT/eval" 2>&1
end=$(date +%s.%N)
fwd=$(awk "BEGIN {print $end - $start}")
calib=$(grep -oE "calibration forward [0-9.]+s" "$OUT/log" | grep -oE "[0-9.]+")
weights=$(du -sb "$MODEL"/*.safetensors | awk '{s+=$1} END {print s/1048576}')
echo "quantize end to end: ${total}s (bar: < 20 s on 2 cores)"
echo "baseline forward over the same 16384 tokens (qforge eval): ${fwd}s"
echo "calibration forward / baseline forward: $(awk "BEGIN {printf \"%.2f\", $calib / $fwd}")"
echo "quantize total / baseline forward: $(awk "BEGIN {printf \"%.2f\", $total / $fwd}")"
echo "checkpoint weights on disk: ${weights} MiB"
