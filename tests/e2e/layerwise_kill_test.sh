#!/usr/bin/env bash
# Layerwise calibration e2e (issue 6): layerwise --no-qdq-from-prev exports are bit-identical to whole-model
# max; runs killed with SIGKILL at named points (QF_TEST_KILL_AT=<event>:<n>) and resumed give the same bytes;
# after every kill the manifest only names layers whose files (and next_inputs) are complete. The same for the
# weight-mutating algorithms gptq, smoothquant and awq.
# Usage: layerwise_kill_test.sh QFORGE SHARED_DIR   (QFORGE may be a wrapper script: tests/gpu/device_suite.sh
# passes one that adds --device cuda to quantize)
set -u
Q=$1
S=$2
T=$S/data/text/janeausten/emma.txt
W=$(mktemp -d /tmp/qf_layerwise_kill.XXXXXX)
trap 'rm -rf "$W"' EXIT
fail=0
RECIPE=general/ptq/nvfp4_default-kv_fp8

quant() {  # quant MODEL EXPORT [extra args...]
  local m=$1 out=$2
  shift 2
  "$Q" quantize --model "$S/data/models/$m" --recipe $RECIPE --calib "$T" --calib-size 4 --calib-seq-len 64 \
    --batch-size 2 --export "$out" --overwrite --no-progress "$@" >"$W/log" 2>&1
}

# The manifest names layer k => layer_0000..layer_k exist complete and layer_k has next_inputs.
check_invariant() {  # check_invariant CKDIR WHAT
  local d=$1 what=$2
  [ -f "$d/manifest.json" ] || return 0
  local last
  last=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['last_completed_layer'])" "$d/manifest.json")
  for ((i = 0; i <= last; i++)); do
    local ld
    ld=$(printf "%s/layer_%04d" "$d" "$i")
    for f in quantizers.json quantizer_buffers.safetensors output_meta.json; do
      if [ ! -f "$ld/$f" ]; then echo "FAIL $what: manifest at layer $last but $ld/$f missing"; fail=1; fi
    done
  done
  local ni n
  n=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['num_layers'])" "$d/manifest.json")
  ni=$(printf "%s/layer_%04d/next_inputs.safetensors" "$d" "$last")
  [ "$last" -eq $((n - 1)) ] && ni=$(printf "%s/layer_%04d/final_hidden.safetensors" "$d" "$last")
  if [ ! -f "$ni" ]; then echo "FAIL $what: manifest at layer $last but $ni missing"; fail=1; fi
}

same() {  # same A B WHAT
  if diff -r "$1" "$2" >/dev/null; then echo "ok   $3"; else echo "FAIL $3: exports differ"; diff -rq "$1" "$2"; fail=1; fi
}

# smoothing_case MODEL TAG QFORMAT NOTE: an algorithm that smooths the weights (--qformat QFORMAT, its log
# naming NOTE, grep -E): layerwise == whole model, killed twice and resumed == whole model, export --from its
# finished checkpoint == whole model. Uses $every of the model's spec.
smoothing_case() {
  local m=$1 tag=$2 qformat=$3 note=$4
  sm() {  # sm EXPORT [extra args...]
    local out=$1
    shift
    "$Q" quantize --model "$S/data/models/$m" --qformat "$qformat" --kv-cache-qformat none --calib "$T" \
      --calib-size 4 --calib-seq-len 64 --batch-size 2 --export "$out" --overwrite --no-progress "$@" >"$W/log" 2>&1
  }
  sm "$W/$m.$tag" || { echo "FAIL $m $tag"; cat "$W/log"; fail=1; }
  if ! grep -qE "$note" "$W/log"; then echo "FAIL $m $tag: nothing smoothed"; cat "$W/log"; fail=1; fi
  sm "$W/$m.${tag}lw" --layerwise --checkpoint-dir "$W/$m.${tag}ck0" --save-every $every ||
    { echo "FAIL $m $tag layerwise"; cat "$W/log"; fail=1; }
  same "$W/$m.$tag" "$W/$m.${tag}lw" "$m: $tag layerwise == whole model"
  local kk rc
  for kk in "layer_calibrated:2" "after_manifest:1"; do
    (QF_TEST_KILL_AT=$kk sm "$W/$m.${tag}kill" --layerwise --checkpoint-dir "$W/$m.${tag}ck1" --save-every $every) 2>/dev/null
    rc=$?
    if [ $rc -ne 137 ] && [ $rc -ne 0 ]; then echo "FAIL $m $tag kill $kk: exit $rc"; cat "$W/log"; fail=1; fi
    check_invariant "$W/$m.${tag}ck1" "$m $tag kill $kk"
  done
  sm "$W/$m.${tag}res" --layerwise --checkpoint-dir "$W/$m.${tag}ck1" --save-every $every ||
    { echo "FAIL $m $tag resume"; cat "$W/log"; fail=1; }
  same "$W/$m.$tag" "$W/$m.${tag}res" "$m: $tag killed twice (save_every $every), resumed"
  if "$Q" export --from "$W/$m.${tag}ck0" --model "$S/data/models/$m" --export "$W/$m.${tag}from" >"$W/log" 2>&1; then
    same "$W/$m.$tag" "$W/$m.${tag}from" "$m: $tag: qforge export --from its finished checkpoint"
  else
    echo "FAIL $m $tag export --from"; cat "$W/log"; fail=1
  fi
}

# KILL_MODELS: "model save_every" pairs, ;-separated (the GPU machine runs one model per call).
IFS=';' read -r -a specs <<< "${KILL_MODELS:-llama-dense-26M 4;qwen2moe-25M 2}"
for spec in "${specs[@]}"; do
  set -- $spec
  m=$1
  every=$2
  quant $m "$W/$m.whole" || { echo "FAIL $m whole-model quantize"; cat "$W/log"; fail=1; continue; }
  quant $m "$W/$m.lw" --layerwise --no-qdq-from-prev || { echo "FAIL $m layerwise"; cat "$W/log"; fail=1; }
  same "$W/$m.whole" "$W/$m.lw" "$m: layerwise == whole-model max"
  quant $m "$W/$m.lws" --layerwise --checkpoint-dir "$W/$m.ck0" --save-every $every --activation-memory 40000 ||
    { echo "FAIL $m layerwise spill"; cat "$W/log"; fail=1; }
  same "$W/$m.whole" "$W/$m.lws" "$m: layerwise with checkpoint + spilled activations == whole-model max"

  # Chains of kills on one directory, then an undisturbed resume. Events: layer_calibrated (after a layer's
  # amax, before its files), layer_file (after each file of a layer directory), next_inputs_batch (inside the
  # next_inputs write), before_layer_commit, before_manifest, after_manifest.
  chains=(
    "layer_calibrated:1"
    "layer_calibrated:2 layer_calibrated:1 layer_calibrated:3"
    "layer_file:2 layer_file:5 layer_file:4"
    "next_inputs_batch:1 next_inputs_batch:2"
    "before_layer_commit:1 before_layer_commit:2 before_layer_commit:1"
    "before_manifest:1 after_manifest:1"
    "layer_file:1 before_manifest:2 layer_calibrated:2"
  )
  c=0
  for chain in "${chains[@]}"; do
    c=$((c + 1))
    d="$W/$m.ck$c"
    for k in $chain; do
      # (in a subshell so bash's "Killed" job report stays out of the log)
      (QF_TEST_KILL_AT=$k quant $m "$W/$m.kill" --layerwise --checkpoint-dir "$d" --save-every $every) 2>/dev/null
      rc=$?
      if [ $rc -ne 137 ] && [ $rc -ne 0 ]; then echo "FAIL $m kill $k: exit $rc"; cat "$W/log"; fail=1; fi
      if [ $rc -eq 0 ]; then echo "note $m: kill point $k not reached (run finished)"; fi
      check_invariant "$d" "$m kill $k"
    done
    quant $m "$W/$m.res$c" --layerwise --checkpoint-dir "$d" --save-every $every ||
      { echo "FAIL $m resume after [$chain]"; cat "$W/log"; fail=1; }
    same "$W/$m.whole" "$W/$m.res$c" "$m: killed at [$chain] (save_every $every), resumed"
  done
  # A finished directory re-exports without recalibrating.
  if "$Q" export --from "$W/$m.ck1" --model "$S/data/models/$m" --export "$W/$m.fromck" >"$W/log" 2>&1; then
    same "$W/$m.whole" "$W/$m.fromck" "$m: qforge export --from a finished checkpoint"
  else
    echo "FAIL $m export --from"; cat "$W/log"; fail=1
  fi
  # Refusals on an unfinished checkpoint (a finished one is a fresh start, as in ModelOpt, before any mismatch
  # check): different save_every, different config.
  (QF_TEST_KILL_AT=after_manifest:1 quant $m "$W/$m.x" --layerwise --checkpoint-dir "$W/$m.ckx" --save-every $every) \
    2>/dev/null
  if quant $m "$W/$m.x" --layerwise --checkpoint-dir "$W/$m.ckx" --save-every $((every + 1)); then
    echo "FAIL $m: a different save_every was accepted"; fail=1
  elif grep -q "save_every mismatch" "$W/log"; then echo "ok   $m: different save_every refused"; else
    echo "FAIL $m: wrong error"; cat "$W/log"; fail=1; fi
  if "$Q" quantize --model "$S/data/models/$m" --recipe general/ptq/fp8_default-kv_fp8 --calib "$T" --calib-size 4 \
    --calib-seq-len 64 --batch-size 2 --export "$W/$m.x" --no-progress --layerwise --checkpoint-dir "$W/$m.ckx" \
    --save-every $every >"$W/log" 2>&1; then
    echo "FAIL $m: a different config was accepted"; fail=1
  elif grep -q "config mismatch" "$W/log"; then echo "ok   $m: different config refused"; else
    echo "FAIL $m: wrong error"; cat "$W/log"; fail=1; fi
  quant $m "$W/$m.rs" --layerwise --checkpoint-dir "$W/$m.ck1" --save-every $((every + 1)) --restart ||
    { echo "FAIL $m --restart"; cat "$W/log"; fail=1; }
  same "$W/$m.whole" "$W/$m.rs" "$m: --restart with another save_every"

  # GPTQ (issue 11) changes the weights: its layerwise checkpoints store them, a killed run resumes to the
  # same bytes, and a finished checkpoint re-exports them.
  gq() {  # gq EXPORT CKDIR [extra args...]
    local out=$1 ck=$2
    shift 2
    "$Q" quantize --model "$S/data/models/$m" --recipe general/ptq/nvfp4_default-kv_none-gptq --calib "$T" \
      --calib-size 4 --calib-seq-len 64 --batch-size 2 --export "$out" --overwrite --no-progress \
      --checkpoint-dir "$ck" --save-every $every "$@" >"$W/log" 2>&1
  }
  gq "$W/$m.gptq" "$W/$m.gck0" || { echo "FAIL $m gptq"; cat "$W/log"; fail=1; }
  if ! grep -q "note: gptq: [1-9][0-9]* weights updated" "$W/log"; then echo "FAIL $m gptq: no update reported"; fail=1; fi
  for k in "after_manifest:1" "layer_calibrated:2 after_manifest:1 layer_file:3"; do
    for kk in $k; do
      (QF_TEST_KILL_AT=$kk gq "$W/$m.gkill" "$W/$m.gck1") 2>/dev/null
      rc=$?
      if [ $rc -ne 137 ] && [ $rc -ne 0 ]; then echo "FAIL $m gptq kill $kk: exit $rc"; cat "$W/log"; fail=1; fi
      check_invariant "$W/$m.gck1" "$m gptq kill $kk"
    done
    gq "$W/$m.gres" "$W/$m.gck1" || { echo "FAIL $m gptq resume"; cat "$W/log"; fail=1; }
    same "$W/$m.gptq" "$W/$m.gres" "$m: gptq killed at [$k] (save_every $every), resumed"
    rm -rf "$W/$m.gck1"
  done
  if "$Q" export --from "$W/$m.gck0" --model "$S/data/models/$m" --export "$W/$m.gfrom" >"$W/log" 2>&1; then
    same "$W/$m.gptq" "$W/$m.gfrom" "$m: gptq: qforge export --from its finished checkpoint"
  else
    echo "FAIL $m gptq export --from"; cat "$W/log"; fail=1
  fi
  if diff -q "$W/$m.gptq/model.safetensors" "$W/$m.whole/model.safetensors" >/dev/null 2>&1; then
    echo "FAIL $m gptq: the export equals max's"; fail=1
  fi

  # SmoothQuant and AWQ (issue 11) fold their scales into the weights: layer by layer (next inputs from the
  # unsmoothed layer, as ModelOpt) each gives the whole-model export's bytes; a killed run resumes to them, and
  # a finished checkpoint re-exports them (weights, pre_quant_scale and its fused flags from the checkpoint).
  smoothing_case "$m" sq int8_smoothquant "note: smoothquant \(alpha 1\): [1-9][0-9]* Linears smoothed"
  smoothing_case "$m" awq nvfp4_awq_full "note: awq_full: [1-9][0-9]* Linears smoothed"
done
exit $fail
