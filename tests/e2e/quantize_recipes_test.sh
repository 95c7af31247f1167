#!/usr/bin/env bash
# End to end: every recipe of issue 5 on llama-dense-26M and qwen2moe-25M quantizes (small calibration) and
# the export passes `qforge check`; a second export over the first replaces it atomically. The mse recipes
# (issue 11) too: the MLP one on both models, the experts one on the MoE model (a dense model has no expert);
# nvfp4_act_headroom on both; gptq on both; smoothquant and awq on both.
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
# smoothquant (issue 11) on both models, from the int8_smoothquant preset: the export carries pre_quant_scale and
# passes check for TRT-LLM (vLLM has no W8A8_SQ path), and its perplexity (eval applies the pre_quant_scale
# before the INT8 input quantizer) stays within 1% of the bf16 model's.
ppl() { grep -oE '^ppl=[0-9.]+' "$OUT/eval" | cut -d= -f2; }
for model in llama-dense-26M qwen2moe-25M; do
  dir="$OUT/$model-int8_sq"
  if ! "$QF" quantize --model "$SHARED/data/models/$model" --qformat int8_smoothquant --kv-cache-qformat none \
       --calib "$SHARED/data/text/janeausten/emma.txt" --calib-size 16 --calib-seq-len 256 --export "$dir" \
       --no-progress > "$OUT/log" 2>&1 || ! grep -qE "note: smoothquant \(alpha 1\): [1-9][0-9]* Linears smoothed" "$OUT/log"; then
    echo "FAIL quantize $model int8_smoothquant"; cat "$OUT/log"; fail=1; continue
  fi
  if ! "$QF" check --target trtllm "$dir" > "$OUT/check" 2>&1; then
    echo "FAIL check $model int8_smoothquant"; cat "$OUT/check"; fail=1; continue
  fi
  "$QF" eval --model "$dir" --text "$SHARED/data/text/janeausten/persuasion.txt" --max-tokens 4096 > "$OUT/eval" 2>&1
  q=$(ppl)
  grep -q "pre_quant_scale (smoothed)" "$OUT/eval" || { echo "FAIL eval $model int8_smoothquant: no pre_quant_scale applied"; fail=1; }
  "$QF" eval --model "$SHARED/data/models/$model" --text "$SHARED/data/text/janeausten/persuasion.txt" \
    --max-tokens 4096 > "$OUT/eval" 2>&1
  b=$(ppl)
  if [ -z "$q" ] || [ -z "$b" ] || ! awk -v q="$q" -v b="$b" 'BEGIN { exit !(q < b * 1.01) }'; then
    echo "FAIL $model int8_smoothquant: ppl $q against bf16 $b (more than 1% worse)"; fail=1; continue
  fi
  echo "ok $model int8_smoothquant: ppl $q (bf16 $b); $(tail -1 "$OUT/check")"
done
# AWQ (issue 11) on both models from the presets: NVFP4 W4A4 with awq_lite / awq_clip / awq_full (awq_lite's
# scales make the export NVFP4_AWQ, with pre_quant_scale tensors where ModelOpt keeps them; awq_clip alone is
# plain NVFP4) and INT4 W4A16 (int4_awq, awq_lite; checked for TRT-LLM, which serves W4A16_AWQ). Each passes check, and eval (which applies the pre_quant_scale) of the
# INT4 export is no worse than the same format calibrated with max.
for model in llama-dense-26M qwen2moe-25M; do
  for qformat in nvfp4_awq_lite nvfp4_awq_clip nvfp4_awq_full int4_awq; do
    dir="$OUT/$model-$qformat"
    if ! "$QF" quantize --model "$SHARED/data/models/$model" --qformat $qformat --kv-cache-qformat none \
         --calib "$SHARED/data/text/janeausten/emma.txt" --calib-size 8 --calib-seq-len 128 --export "$dir" \
         --no-progress > "$OUT/log" 2>&1 || ! grep -qE "note: awq_(lite|clip|full): " "$OUT/log"; then
      echo "FAIL quantize $model $qformat"; cat "$OUT/log"; fail=1; continue
    fi
    # NVFP4_AWQ (awq_lite's scales): no runtime of the contract loads it, so only the format itself is checked.
    case $qformat in
      int4_awq) target="--target trtllm" ;;
      nvfp4_awq_lite | nvfp4_awq_full) target="--target any" ;;
      *) target="" ;;
    esac
    # shellcheck disable=SC2086
    if ! "$QF" check $target "$dir" > "$OUT/check" 2>&1; then
      echo "FAIL check $model $qformat"; cat "$OUT/check"; fail=1; continue
    fi
    echo "ok $model $qformat: $(tail -1 "$OUT/check")"
  done
  "$QF" quantize --model "$SHARED/data/models/$model" --qformat int4_awq --algorithm max --kv-cache-qformat none \
    --calib "$SHARED/data/text/janeausten/emma.txt" --calib-size 8 --calib-seq-len 128 --export "$OUT/$model-int4max" \
    --no-progress > "$OUT/log" 2>&1 || { echo "FAIL quantize $model int4_awq max"; cat "$OUT/log"; fail=1; continue; }
  "$QF" eval --model "$OUT/$model-int4_awq" --text "$SHARED/data/text/janeausten/persuasion.txt" --max-tokens 4096 \
    > "$OUT/eval" 2>&1
  a=$(ppl)
  grep -q "pre_quant_scale (smoothed)" "$OUT/eval" || { echo "FAIL eval $model int4_awq: no pre_quant_scale applied"; fail=1; }
  "$QF" eval --model "$OUT/$model-int4max" --text "$SHARED/data/text/janeausten/persuasion.txt" --max-tokens 4096 \
    > "$OUT/eval" 2>&1
  b=$(ppl)
  if [ -z "$a" ] || [ -z "$b" ] || ! awk -v a="$a" -v b="$b" 'BEGIN { exit !(a <= b) }'; then
    echo "FAIL $model int4_awq: ppl $a with awq_lite against $b with max"; fail=1; continue
  fi
  echo "ok $model int4_awq: ppl $a with awq_lite, $b with max"
done
# No temporary directories are left behind.
if ls "$OUT" | grep -q '\.tmp\.'; then echo "FAIL: temporary export directory left behind"; fail=1; fi
exit $fail
