#!/usr/bin/env bash
# End to end: every recipe of issue 5 on llama-dense-26M and qwen2moe-25M quantizes (small calibration) and
# the export passes `qforge check`; a second export over the first replaces it atomically. The mse recipes
# (issue 11) too: the MLP one on both models, the experts one on the MoE model (a dense model has no expert);
# nvfp4_act_headroom on both; gptq on both.
set -euo pipefail
QF=$1
SHARED=$2
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
fail=0
# quantize_and_check MODEL RECIPE [LOG_PATTERN WHAT]: quantizes with the recipe, requires LOG_PATTERN (grep -E) in
# the log when given (WHAT names it in the failure), and `qforge check` of the export.
quantize_and_check() {
  local model=$1 recipe=$2 pattern=${3:-} what=${4:-}
  local dir="$OUT/$model-$recipe"
  if ! "$QF" quantize --model "$SHARED/data/models/$model" --recipe "general/ptq/$recipe" \
       --calib "$SHARED/data/text/janeausten/emma.txt" --calib-size 4 --calib-seq-len 128 \
       --export "$dir" --no-progress > "$OUT/log" 2>&1; then
    echo "FAIL quantize $model $recipe"; cat "$OUT/log"; fail=1; return
  fi
  if [ -n "$pattern" ] && ! grep -qE "$pattern" "$OUT/log"; then
    echo "FAIL $model $recipe: no $what reported"; cat "$OUT/log"; fail=1; return
  fi
  if ! "$QF" check "$dir" > "$OUT/check" 2>&1; then
    echo "FAIL check $model $recipe"; cat "$OUT/check"; fail=1; return
  fi
  echo "ok $model $recipe: $(tail -1 "$OUT/check")"
}
for model in llama-dense-26M qwen2moe-25M; do
  for recipe in fp8_default-kv_fp8 nvfp4_default-kv_fp8 nvfp4_mlp_only-kv_fp8 nvfp4_experts_only-kv_fp8 \
                nvfp4_omlp_only-kv_fp8 fp8_qkvo-nvfp4_mlp; do
    quantize_and_check "$model" "$recipe"
  done
done
for pair in "llama-dense-26M nvfp4_mlp_only_mse-kv_fp8_cast" "qwen2moe-25M nvfp4_mlp_only_mse-kv_fp8_cast" \
            "qwen2moe-25M nvfp4_experts_only_mse-kv_fp8_cast"; do
  quantize_and_check "${pair%% *}" "${pair#* }" "note: mse: .* searched \(FP8 scale sweep" "FP8 scale sweep"
done
# nvfp4_act_headroom (issue 11) on both models: the headroom calibration ran on the NVFP4 input quantizers.
for model in llama-dense-26M qwen2moe-25M; do
  quantize_and_check "$model" nvfp4_act_headroom-kv_fp8_cast \
    "nvfp4_act_headroom: calibrating [1-9][0-9]* NVFP4 activation quantizer" "headroom calibration"
done
# gptq (issue 11) on both models, from the recipe (layerwise, with its relative checkpoint_dir: run where
# that directory may be created).
mkdir -p "$OUT/cwd"
for model in llama-dense-26M qwen2moe-25M; do
  rm -rf "$OUT/cwd/output"
  cd "$OUT/cwd"
  quantize_and_check "$model" nvfp4_default-kv_none-gptq "note: gptq: [1-9][0-9]* weights updated" "GPTQ update"
  cd - > /dev/null
done
# No temporary directories are left behind.
if ls "$OUT" | grep -q '\.tmp\.'; then echo "FAIL: temporary export directory left behind"; fail=1; fi
exit $fail
