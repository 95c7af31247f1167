#!/usr/bin/env bash
# Perplexity before and after quantization on llama-dense-26M and qwen2moe-25M, for every recipe of issue 5
# (QF_PPL_PART=recipes), for NVFP4 W4A4 + FP8 KV with each implemented calibration algorithm
# (QF_PPL_PART=algorithms), for INT8 W8A8 with and without SmoothQuant (QF_PPL_PART=int8) and for AWQ
# (QF_PPL_PART=awq; default: all):
# calibrated on Austen (Sense and Sensibility, Pride and Prejudice, Mansfield Park, Emma; never Persuasion),
# 64 x 512 tokens; evaluated on Persuasion and WikiText-2 test (first 20,519 predicted tokens, 512-token
# windows, as the references; QF_PPL_TOKENS=N evaluates fewer). Each export must pass `qforge check`. Prints a
# markdown table.
# Usage: bash scripts/ppl_table.sh [path/to/qforge] [out_dir]     (takes a while on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
QF=${1:-build/qforge/cli/qforge}
OUT=${2:-out/ppl_table}
SHARED=${QF_SHARED_DIR:-../shared}
T=$SHARED/data/text
export QF_PROGRESS=0
mkdir -p "$OUT"
ppl() { "$QF" eval --model "$1" --text "$2" --max-tokens "${QF_PPL_TOKENS:-20519}" --batch-size 4 2>/dev/null | tail -1 | sed -E 's/ppl=([0-9.]+).*/\1/'; }
PART=${QF_PPL_PART:-all}
calib=("$T/janeausten/sensesensibility.txt" "$T/janeausten/prideprejudice.txt" "$T/janeausten/mansfieldpark.txt"
       "$T/janeausten/emma.txt")
if [ "$PART" = all ] || [ "$PART" = recipes ]; then
  echo "| model | recipe | check | persuasion | wikitext2_test |"
  echo "|---|---|---|---|---|"
  for model in llama-dense-26M qwen2moe-25M; do
    M=$SHARED/data/models/$model
    echo "| $model | (bf16 original) | - | $(ppl "$M" "$T/janeausten/persuasion.txt") | $(ppl "$M" "$T/wikitext2/wiki.test.txt") |"
    for recipe in fp8_default-kv_fp8 nvfp4_default-kv_fp8 nvfp4_mlp_only-kv_fp8 nvfp4_experts_only-kv_fp8 \
                  nvfp4_omlp_only-kv_fp8 fp8_qkvo-nvfp4_mlp; do
      d=$OUT/$model-$recipe
      "$QF" quantize --model "$M" --recipe "general/ptq/$recipe" \
        --calib "$T/janeausten/sensesensibility.txt" "$T/janeausten/prideprejudice.txt" \
                "$T/janeausten/mansfieldpark.txt" "$T/janeausten/emma.txt" \
        --calib-size 64 --calib-seq-len 512 --batch-size 8 --export "$d" --overwrite > "$d.log" 2>&1
      if "$QF" check "$d" > "$d.check" 2>&1; then c=pass; else c=FAIL; fi
      echo "| $model | $recipe | $c | $(ppl "$d" "$T/janeausten/persuasion.txt") | $(ppl "$d" "$T/wikitext2/wiki.test.txt") |"
    done
  done
fi

# algorithm_table KV_QFORMAT CHECK_TARGET ROW...: per model the bf16 original, then per ROW ("qformat
# algorithm") its export with that KV-cache preset, `qforge check --target CHECK_TARGET` of it and its
# perplexities.
algorithm_table() {
  local kv=$1 target=$2 model M row q algo d c
  shift 2
  echo
  echo "| model | weights | algorithm | check ($target) | persuasion | wikitext2_test |"
  echo "|---|---|---|---|---|---|"
  for model in llama-dense-26M qwen2moe-25M; do
    M=$SHARED/data/models/$model
    echo "| $model | (bf16 original) | - | - | $(ppl "$M" "$T/janeausten/persuasion.txt") | $(ppl "$M" "$T/wikitext2/wiki.test.txt") |"
    for row in "$@"; do
      q=${row%% *}
      algo=${row#* }
      d=$OUT/$model-$q-$(echo "$algo" | tr -cd 'a-z0-9_')
      "$QF" quantize --model "$M" --qformat "$q" --kv-cache-qformat "$kv" --algorithm "$algo" --calib "${calib[@]}" \
        --calib-size 64 --calib-seq-len 512 --batch-size 8 --export "$d" --overwrite > "$d.log" 2>&1
      if "$QF" check --target "$target" "$d" > "$d.check" 2>&1; then c=pass; else c=FAIL; fi
      echo "| $model | $q | $algo | $c | $(ppl "$d" "$T/janeausten/persuasion.txt") | $(ppl "$d" "$T/wikitext2/wiki.test.txt") |"
    done
  done
}

# The algorithm axis (issue 11): NVFP4 W4A4 + FP8 KV cache. max and mse on ModelOpt's default NVFP4 (dynamic
# weight blocks; mse searches the weight global amax with the 39 multipliers); max, mse + fp8_scale_sweep and
# local_hessian on the static-weight preset the sweep applies to (ModelOpt's NVFP4_W4A4_WEIGHT_MSE_FP8_SWEEP_CFG
# and NVFP4_W4A4_WEIGHT_LOCAL_HESSIAN_CFG); nvfp4_act_headroom (activation global scales from the block-amax
# histogram, weights by max) on the default NVFP4; gptq (layerwise, as its recipe) on the static-weight preset
# (ModelOpt's nvfp4_default-kv_none-gptq weights), with qforge's act_order, on the default NVFP4, and with qforge's
# scale_algorithm (the FP8-sweep mse or the local_hessian scales instead of max's); W4A16 NVFP4 with max and gptq.
if [ "$PART" = all ] || [ "$PART" = algorithms ]; then
  rows=("nvfp4 max" "nvfp4 mse" "nvfp4_w4a4_weight_mse_fp8_sweep max"
        "nvfp4_w4a4_weight_mse_fp8_sweep {method: mse, fp8_scale_sweep: true}"
        "nvfp4_w4a4_weight_local_hessian local_hessian" "nvfp4 nvfp4_act_headroom"
        "nvfp4_w4a4_weight_mse_fp8_sweep {method: gptq, layerwise: {enable: true}}"
        "nvfp4_w4a4_weight_mse_fp8_sweep {method: gptq, act_order: true, layerwise: {enable: true}}"
        "nvfp4 {method: gptq, layerwise: {enable: true}}"
        "nvfp4_w4a4_weight_mse_fp8_sweep {method: gptq, scale_algorithm: {method: mse, fp8_scale_sweep: true}, layerwise: {enable: true}}"
        "nvfp4_w4a4_weight_local_hessian {method: gptq, scale_algorithm: {method: local_hessian}, layerwise: {enable: true}}"
        "w4a16_nvfp4 max" "w4a16_nvfp4 {method: gptq, layerwise: {enable: true}}")
  # QF_PPL_ROWS: only these rows ('|'-separated "qformat algorithm" pairs of the list above, or others).
  [ -n "${QF_PPL_ROWS:-}" ] && IFS='|' read -r -a rows <<< "$QF_PPL_ROWS"
  algorithm_table fp8 vllm "${rows[@]}"
fi

# INT8 W8A8 (per-channel weights, per-tensor static inputs; no KV-cache quantization): max alone, and
# SmoothQuant with ModelOpt's default alpha 1 and with 0.5 (the exports carry pre_quant_scale; check for
# TRT-LLM, the runtime that loads W8A8_SQ_PER_CHANNEL).
if [ "$PART" = all ] || [ "$PART" = int8 ]; then
  algorithm_table none trtllm "int8_smoothquant max" "int8_smoothquant smoothquant" \
    "int8_smoothquant {method: smoothquant, alpha: 0.5}"
fi

# AWQ: NVFP4 W4A4 + FP8 KV with awq_lite, awq_clip and awq_full against max on the same preset (checked with
# `--target any`: no runtime of the contract serves NVFP4_AWQ); INT4 W4A16 (ModelOpt's int4_awq, blocks of 128,
# no KV-cache quantization) with max and awq_lite, checked for TRT-LLM, which serves W4A16_AWQ.
if [ "$PART" = all ] || [ "$PART" = awq ]; then
  algorithm_table fp8 any "nvfp4_awq_lite max" "nvfp4_awq_lite awq_lite" "nvfp4_awq_clip awq_clip" \
    "nvfp4_awq_full awq_full"
  algorithm_table none trtllm "int4_awq max" "int4_awq awq_lite"
fi
