#!/usr/bin/env bash
# Reproduces the reference perplexities of ../shared/data/models with `qforge eval` and compares them
# (stories260K within 0.01%, the trained models within 0.1%). Takes a few minutes on 2 cores.
# Usage: scripts/check_reference_ppl.sh [path/to/qforge]   (default: build/qforge/cli/qforge)
set -euo pipefail
cd "$(dirname "$0")/.."
QF=${1:-build/qforge/cli/qforge}
M=${QF_SHARED_DIR:-../shared}/data/models
T=${QF_SHARED_DIR:-../shared}/data/text
status=0
check() {  # name want rel_tol args...
  local name=$1 want=$2 tol=$3
  shift 3
  local line
  line=$(QF_PROGRESS=0 "$QF" eval "$@" | tail -1)
  local got=${line#ppl=}
  got=${got%% *}
  if python3 -c "import sys; g,w,t=map(float,sys.argv[1:]); sys.exit(0 if abs(g-w)<=t*w else 1)" "$got" "$want" "$tol"; then
    echo "ok   $name: $line (reference $want)"
  else
    echo "FAIL $name: $line (reference $want, tolerance $tol)"
    status=1
  fi
}
ids=$M/stories260K/reference/prideprejudice_first2049.ids
check "stories260K prideprejudice ids" 43.2458 0.0001 --model "$M/stories260K/hf" --ids "$ids"
check "stories260K-moe-upcycled prideprejudice ids" 43.2458 0.0001 --model "$M/stories260K-moe-upcycled/hf" --ids "$ids"
for model in llama-dense-26M qwen2moe-25M; do
  for pair in "persuasion janeausten/persuasion.txt" "wikitext2_test wikitext2/wiki.test.txt"; do
    set -- $pair
    want=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['ppl'][sys.argv[2]]['ppl'])" "$M/$model/reference.json" "$1")
    check "$model $1" "$want" 0.001 --model "$M/$model" --text "$T/$2" --max-tokens 20519 --batch-size 4
  done
done
exit $status
