#!/usr/bin/env bash
# Issue 10's GPU test suites in one call on the GPU machine, for the models present:
#   1. the backend-consistency suite (every op, CPU against CUDA, f32 and bf16; forward tests on a synthetic
#      Llama and on QF_CONSISTENCY_MODEL), unless SKIP_CONSISTENCY=1;
#   2. tests/gpu/gpu_vs_cpu_e2e.sh for each model (six recipes; CPU, CUDA bf16 and CUDA f32 exports);
#   3. tests/e2e/layerwise_kill_test.sh with `quantize --device cuda` (layerwise == whole-model bytes,
#      SIGKILL at every checkpoint step and resume), for each model.
# Usage: device_suite.sh GPU_DIR MODELS_DIR TEXT_DIR MODEL...
#   GPU_DIR     what scripts/build_cuda.sh gathered (.gpu: run.sh, qforge, qforge_backend_consistency_tests)
#   MODELS_DIR  holds the model directories; TEXT_DIR holds persuasion.txt (eval) and emma.txt (calibration)
# Writes logs to $OUT (or a temporary folder) and exits non-zero if any suite failed.
set -uo pipefail
G=$(cd "$1" && pwd) MODELS=$(cd "$2" && pwd) TEXT=$(cd "$3" && pwd)
shift 3
here=$(cd "$(dirname "$0")" && pwd)
LOG=${OUT:-$(mktemp -d)}
W=$(mktemp -d /tmp/qf_device_suite.XXXXXX)
trap 'rm -rf "$W"' EXIT
status=0
run() {  # run NAME CMD...: the command's output to $LOG/NAME.log (and its tail to stdout)
  local name=$1
  shift
  local t0=$SECONDS
  "$@" >"$LOG/$name.log" 2>&1
  local rc=$?
  echo "== $name: exit $rc, $((SECONDS - t0)) s"
  tail -n "${TAIL:-12}" "$LOG/$name.log"
  [ $rc -eq 0 ] || status=1
}
if [ "${SKIP_CONSISTENCY:-0}" != 1 ]; then
  QF_CONSISTENCY_MODEL=$MODELS/$1 run consistency "$G/run.sh" "$G/qforge_backend_consistency_tests" --gtest_brief=1
fi
for m in "$@"; do
  OUT=$W/e2e_$m run "gpu_vs_cpu_$m" bash "$here/gpu_vs_cpu_e2e.sh" "$G/run.sh $G/qforge" "$MODELS" "$TEXT/emma.txt" \
    "$TEXT/persuasion.txt" "$m"
done
# The kill test reads SHARED/data/models/M and SHARED/data/text/janeausten/emma.txt; quantize gets --device cuda.
mkdir -p "$W/shared/data/text/janeausten"
ln -s "$MODELS" "$W/shared/data/models"
cp "$TEXT/emma.txt" "$W/shared/data/text/janeausten/emma.txt"
cat >"$W/qf_cuda" <<WRAP
#!/usr/bin/env bash
if [ "\$1" = quantize ]; then shift; exec "$G/run.sh" "$G/qforge" quantize --device cuda "\$@"; fi
exec "$G/run.sh" "$G/qforge" "\$@"
WRAP
chmod +x "$W/qf_cuda"
for m in "$@"; do
  every=4
  [ "$m" = qwen2moe-25M ] && every=2
  KILL_MODELS="$m $every" QF_PROGRESS=0 TAIL=30 run "layerwise_kill_$m" bash "$here/../e2e/layerwise_kill_test.sh" \
    "$W/qf_cuda" "$W/shared"
done
exit $status
