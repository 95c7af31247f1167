#!/usr/bin/env bash
# GPU end to end (issue 10), run on a machine with a GPU: for each model and each of the six issue-5 recipes,
# quantize on the CPU (the reference), on CUDA in bf16 and on CUDA in f32, then
#   * every export passes `qforge check`;
#   * packed weights, block scales and weight_scale_2 are byte-identical to the CPU export, and input / KV
#     scales agree within 1% (bf16) and 1e-5 relative (f32)  -- `qforge compare`;
#   * each export's perplexity (the whole eval text, or its first PPL_TOKENS tokens) is within 1% (bf16) /
#     0.1% (f32; or the noise floor below where that is larger) of the CPU export's, all evaluated by one
#     evaluator (CUDA, f32, batch 8).
# A W4A4 forward is chaotic in its inputs (a last-bit change flips E2M1 roundings, which cascade), so the
# perplexity of one export moves when nothing but the evaluator's GEMM shapes change: the script prints that
# noise floor (the CPU export at batch 8 vs batch 1) beside the results.
# Usage: gpu_vs_cpu_e2e.sh QFORGE MODELS_DIR CALIB_TEXT EVAL_TEXT [MODEL...]
# Env: CALIB_SIZE (128), CALIB_SEQ (512), PPL_TOKENS (0: the whole text), RECIPES (the six), OUT (a temp dir).
set -uo pipefail
read -r -a QF <<< "$1"  # the qforge command (may be a wrapper plus the binary)
MODELS=$2 CALIB=$3 EVAL=$4
shift 4
models=("$@")
[ ${#models[@]} -eq 0 ] && models=(llama-dense-26M qwen2moe-25M)
CALIB_SIZE=${CALIB_SIZE:-128} CALIB_SEQ=${CALIB_SEQ:-512} PPL_TOKENS=${PPL_TOKENS:-0}
WORK=${OUT:-$(mktemp -d)}/gpu_e2e
mkdir -p "$WORK"
read -r -a recipes <<< "${RECIPES:-fp8_default-kv_fp8 nvfp4_default-kv_fp8 nvfp4_mlp_only-kv_fp8 nvfp4_experts_only-kv_fp8 nvfp4_omlp_only-kv_fp8 fp8_qkvo-nvfp4_mlp}"
fail=0
ppl() {  # ppl DIR [BATCH] -> perplexity (evaluated on CUDA in f32, the same evaluator for every export)
  "${QF[@]}" eval --model "$1" --text "$EVAL" --max-tokens "$PPL_TOKENS" --batch-size "${2:-8}" --device cuda \
    --compute-dtype f32 2>/dev/null | sed -n 's/^ppl=\([0-9.]*\).*/\1/p'
}
printf '%-16s %-26s %-5s %-6s %-8s %-10s %-9s %-9s %s\n' model recipe run check compare scale_rdiff ppl ppl_rdiff secs
for m in "${models[@]}"; do
  for r in "${recipes[@]}"; do
    declare -A P=()
    for run in cpu bf16 f32; do
      d="$WORK/$m-$r-$run"
      rm -rf "$d"
      case $run in
        cpu) dev=(--device cpu) ;;
        bf16) dev=(--device cuda --compute-dtype bf16) ;;
        f32) dev=(--device cuda --compute-dtype f32) ;;
      esac
      t0=$(date +%s.%N)
      if ! "${QF[@]}" quantize --model "$MODELS/$m" --recipe "general/ptq/$r" --calib "$CALIB" --calib-size "$CALIB_SIZE" \
           --calib-seq-len "$CALIB_SEQ" --batch-size 16 --export "$d" --no-progress "${dev[@]}" > "$d.log" 2>&1; then
        echo "FAIL quantize $m $r $run"; tail -5 "$d.log"; fail=1; continue
      fi
      secs=$(python3 -c "print($(date +%s.%N) - $t0)")
      chk=ok; "${QF[@]}" check "$d" > "$d.check" 2>&1 || { chk=FAIL; fail=1; tail -3 "$d.check"; }
      cmp=- rd=-
      if [ $run != cpu ]; then
        tol=0.01; [ $run = f32 ] && tol=0.00001
        if "${QF[@]}" compare "$WORK/$m-$r-cpu" "$d" --scale-rtol $tol > "$d.cmp" 2>&1; then cmp=ok; else cmp=FAIL; fail=1; head -5 "$d.cmp"; fi
        rd=$(sed -n 's/.*max relative difference \([0-9.e+-]*\).*/\1/p' "$d.cmp" | head -1)
      fi
      P[$run]=$(ppl "$d")
      if [ $run = cpu ]; then
        p1=$(ppl "$d" 1)
        noise=$(python3 -c "print(abs($p1-${P[cpu]})/${P[cpu]})")
        echo "noise floor $m $r: the CPU export at batch 8 ${P[cpu]}, at batch 1 $p1 ($(python3 -c "print(f'{$noise:.2e}')"))"
      fi
      prd=-
      if [ $run != cpu ] && [ -n "${P[cpu]:-}" ] && [ -n "${P[$run]}" ]; then
        prd=$(python3 -c "print(f'{abs(${P[$run]}-${P[cpu]})/${P[cpu]}:.2e}')")
        # Issue 10's limits: 1% in bf16, 0.1% in f32. The f32 limit is below what the CPU export itself moves by
        # between two eval batch sizes on some recipes (the noise floor, from GEMM rounding flipping NVFP4
        # roundings; it also moves with OpenBLAS's kernel set), so f32 passes within max(0.1%, that floor).
        lim=0.01; [ $run = f32 ] && lim=$(python3 -c "print(max(0.001, ${noise:-0}))")
        python3 -c "import sys; sys.exit(0 if abs(${P[$run]}-${P[cpu]})/${P[cpu]} <= $lim else 1)" || { echo "FAIL ppl $m $r $run"; fail=1; }
      fi
      printf '%-16s %-26s %-5s %-6s %-8s %-10s %-9s %-9s %.1f\n' "$m" "$r" "$run" "$chk" "$cmp" "$rd" "${P[$run]:-?}" "$prd" "$secs"
    done
    unset P
  done
done
echo "gpu_vs_cpu_e2e: $([ $fail = 0 ] && echo PASS || echo FAIL)"
exit $fail
