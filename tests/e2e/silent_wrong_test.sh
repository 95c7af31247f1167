#!/usr/bin/env bash
# End to end (issue 9, "never a silent wrong result"): flags that would fail late or silently do something else
# are refused or warned about; configs that quantize nothing, or that no export format can represent, fail
# before calibration naming the quant_cfg entry; non-quantization recipes are refused naming their recipe_type;
# a tokenizer bigger than the embedding names both; patterns that match nothing are listed. Inputs are built in
# a temporary directory from the shared models.
set -uo pipefail
QF=$1
SHARED=$2
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
fail=0
MODEL="$SHARED/data/models/stories260K/hf"  # max_position_embeddings 512, tokenizer of 512 ids
TEXT="$SHARED/data/text/janeausten/emma.txt"

# expect NAME EXIT_CODE NEEDLE -- command...: the command exits with EXIT_CODE and its output contains NEEDLE.
expect() {
  local name=$1 code=$2 needle=$3
  shift 4
  "$@" > "$OUT/log" 2>&1
  local rc=$?
  if [[ $rc -ne $code ]]; then
    echo "FAIL $name: exit $rc, expected $code"; cat "$OUT/log"; fail=1; return
  fi
  if ! grep -qF -- "$needle" "$OUT/log"; then
    echo "FAIL $name: output lacks '$needle'"; cat "$OUT/log"; fail=1; return
  fi
  echo "ok $name"
}

Q=(quantize --model "$MODEL" --calib "$TEXT" --calib-size 2 --calib-seq-len 64 --no-progress)
expect qformat_empty 1 "--qformat is empty" -- "$QF" "${Q[@]}" --qformat '' --export "$OUT/e1"
expect batch_size_zero 1 "--batch-size must be >= 1, got 0" -- "$QF" "${Q[@]}" --batch-size 0 --export "$OUT/e2"
expect shard_zero 1 "--max-shard-size 0 GiB is out of range" -- "$QF" "${Q[@]}" --max-shard-size 0 --export "$OUT/e3"
expect shard_huge 1 "--max-shard-size 4096 GiB is out of range" -- \
  "$QF" "${Q[@]}" --max-shard-size 4096 --export "$OUT/e4"
expect plan_qformat_empty 1 "--qformat is empty" -- "$QF" plan --model "$MODEL" --qformat ''

# Recipes that are not quantization recipes.
printf 'metadata:\n  recipe_type: speculative_eagle\neagle: {}\n' > "$OUT/eagle.yaml"
expect quantize_speculative 1 "speculative_eagle" -- "$QF" "${Q[@]}" --recipe "$OUT/eagle.yaml" --export "$OUT/e5"
expect plan_speculative 1 "recipe_type 'speculative_eagle', which is not a quantization recipe" -- \
  "$QF" plan --model "$MODEL" --recipe "$OUT/eagle.yaml"

# A recipe that enables nothing, and one that no export format can represent: refused before calibration.
printf 'metadata:\n  recipe_type: ptq\nquantize:\n  algorithm: max\n  quant_cfg:\n    - quantizer_name: "*"\n      enable: false\n' \
  > "$OUT/nothing.yaml"
expect quantize_nothing 1 "enable no quantizer of this model" -- \
  "$QF" "${Q[@]}" --recipe "$OUT/nothing.yaml" --export "$OUT/e6"
if grep -q "calibration:" "$OUT/log"; then echo "FAIL quantize_nothing calibrated first"; fail=1; fi
printf 'metadata:\n  recipe_type: ptq\nquantize:\n  algorithm: max\n  quant_cfg: []\n' > "$OUT/empty.yaml"
expect plan_empty 1 "quant_cfg is empty" -- "$QF" plan --model "$MODEL" --recipe "$OUT/empty.yaml"
cat > "$OUT/mx16.yaml" <<'EOF'
metadata:
  recipe_type: ptq
quantize:
  algorithm: max
  quant_cfg:
    - quantizer_name: "*"
      enable: false
    - quantizer_name: "*mlp*weight_quantizer"
      cfg: {num_bits: [2, 1], block_sizes: {-1: 16, type: dynamic, scale_bits: [8, 0]}}
EOF
expect plan_mx_block16 1 "(set by quant_cfg entry 1)" -- "$QF" plan --model "$MODEL" --recipe "$OUT/mx16.yaml"
expect quantize_mx_block16 1 "format 'mxfp4' stores block sizes {-1: 32}, the quantizer has {-1: 16}" -- \
  "$QF" "${Q[@]}" --recipe "$OUT/mx16.yaml" --export "$OUT/e7"
if [[ -e "$OUT/e7" ]]; then echo "FAIL quantize_mx_block16 wrote an export"; fail=1; fi

# Sequence lengths above max_position_embeddings warn; patterns that match nothing are listed.
expect calib_seq_len_warns 0 "--calib-seq-len 600 is above the model's max_position_embeddings 512" -- \
  "$QF" quantize --model "$MODEL" --calib "$TEXT" --calib-size 1 --calib-seq-len 600 --no-progress \
  --qformat fp8 --export "$OUT/e8"
expect unmatched_note 0 "quant_cfg entries match no quantizer of this model" -- \
  "$QF" plan --model "$MODEL" --qformat fp8
if ! grep -q "quant_cfg entries match no quantizer of this model" <("$QF" quantize --model "$MODEL" --calib "$TEXT" \
     --calib-size 1 --calib-seq-len 64 --no-progress --qformat fp8 --export "$OUT/e9" 2>&1); then
  echo "FAIL quantize summary lacks the unmatched-pattern note"; fail=1
fi
# stories260K's MLP is 172 wide: NVFP4 blocks of 16 do not tile it, which is known before calibrating.
expect nvfp4_shape 1 "Linear 'model.layers.0.mlp.down_proj' has weight shape [64, 172] (out, in), which export format" \
  -- "$QF" "${Q[@]}" --qformat nvfp4 --export "$OUT/e11"
if grep -q "calibration:" "$OUT/log"; then echo "FAIL nvfp4_shape calibrated first"; fail=1; fi

# eval: --max-tokens 0 means no limit (documented), negative is an error; --seq-len above the model warns.
expect eval_max_tokens_negative 1 "--max-tokens must be >= 0" -- \
  "$QF" eval --model "$MODEL" --text "$TEXT" --max-tokens -1
expect eval_batch_zero 1 "--batch-size must be >= 1" -- "$QF" eval --model "$MODEL" --text "$TEXT" --batch-size 0
expect eval_help 0 "0 (the default) means no limit" -- "$QF" eval --help
expect eval_seq_len_warns 0 "--seq-len 1024 is above the model's max_position_embeddings 512" -- \
  "$QF" eval --model "$MODEL" --text "$TEXT" --seq-len 1024 --max-tokens 1100

# A tokenizer with more ids than the embedding has rows names both files and sizes.
mkdir -p "$OUT/mismatch"
cp "$SHARED/data/models/tiny/qwen2/config.json" "$SHARED/data/models/tiny/qwen2/model.safetensors" "$OUT/mismatch/"
cp "$MODEL/tokenizer.json" "$MODEL/tokenizer_config.json" "$OUT/mismatch/"
expect vocab_mismatch 1 "has 512 token ids but the embedding 'model.embed_tokens.weight' of $OUT/mismatch has 256 rows" \
  -- "$QF" eval --model "$OUT/mismatch" --text "$TEXT" --max-tokens 100
expect vocab_mismatch_quantize 1 "tokenizer.json has 512 token ids" -- \
  "$QF" quantize --model "$OUT/mismatch" --calib "$TEXT" --calib-size 1 --calib-seq-len 64 --no-progress \
  --qformat fp8 --export "$OUT/e10"
exit $fail
