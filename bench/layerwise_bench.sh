#!/usr/bin/env bash
# Whole-model vs layerwise quantization of a random-weight Llama at real shapes, several times larger than the
# trained models (default: hidden 1024, 16 layers, intermediate 2816, bf16, ~206M parameters). Reports wall time
# and peak RSS (the quantize summary's VmHWM) of each, and what one layer's f32 weights and one set of captured
# activations take, which layerwise peak RSS should stay near (plus the process baseline and the export).
# Usage: bench/layerwise_bench.sh QFORGE SHARED_DIR [WORKDIR]
set -eu
Q=$1
S=$2
W=${3:-$(mktemp -d /tmp/qf_layerwise_bench.XXXXXX)}
H=${QF_BENCH_HIDDEN:-1024}
L=${QF_BENCH_LAYERS:-16}
I=${QF_BENCH_INTERMEDIATE:-2816}
N=${QF_BENCH_SAMPLES:-8}
SEQ=${QF_BENCH_SEQ:-256}
M=$W/synthetic-llama
if [ ! -f "$M/config.json" ]; then
  "$Q" synth-model --out "$M" --hidden $H --layers $L --intermediate $I --heads 16 --kv-heads 8 --vocab 8192 \
    --shard-mb 400
  cp "$S/data/models/llama-dense-26M/tokenizer.json" "$S/data/models/llama-dense-26M/tokenizer_config.json" "$M/"
fi
echo "model: $(du -sh "$M" | cut -f1) on disk, hidden $H, $L layers, intermediate $I"
run() {  # run NAME args...
  local name=$1
  shift
  local t0 t1
  t0=$(date +%s.%N)
  "$Q" quantize --model "$M" --recipe general/ptq/nvfp4_default-kv_fp8 --calib "$S/data/text/janeausten/emma.txt" \
    --calib-size $N --calib-seq-len $SEQ --export "$W/out-$name" --overwrite --no-progress "$@" >"$W/$name.log" 2>&1
  t1=$(date +%s.%N)
  printf "%-10s wall %6.1fs  %s\n" "$name" "$(echo "$t1 - $t0" | bc)" "$(grep 'peak RSS' "$W/$name.log")"
}
run whole
run layerwise --layerwise --checkpoint-dir "$W/ckpt" --restart
grep -h "^layerwise:" "$W/layerwise.log"
layer_mib=$(echo "(4*$H*$H + 2*4*$H*$H/2 + 3*4*$H*$I) / 1048576" | bc)   # q,o + k,v (8 of 16 heads) + MLP, f32
act_mib=$(echo "$N*$SEQ*$H*4/1048576" | bc)
echo "one layer's f32 weights: ${layer_mib} MiB; one activation set: ${act_mib} MiB"
if cmp -s "$W/out-whole/model.safetensors" "$W/out-layerwise/model.safetensors" 2>/dev/null ||
  diff -rq "$W/out-whole" "$W/out-layerwise" >/dev/null; then
  echo "exports: bit-identical"
else
  echo "exports: DIFFER"
fi
