#!/usr/bin/env bash
# Issue 10's benchmark, everything in one run on the GPU machine: qforge against ModelOpt 0.47 and PyTorch's
# plain bf16 forward, on a Llama-3-8B-shaped random model (hidden 4096, 32 layers, intermediate 14336, 32/8
# heads, vocab 128256, bf16, sharded), for NVFP4 W4A4 + FP8 KV cache with max calibration over 512 x 512
# tokens and an export. The same recipe for both tools (general/ptq/nvfp4_default-kv_fp8, qforge's built-in
# copy of ModelOpt's recipe of that name) and the same token ids for all three.
#
# Runs, in order, each with its own nvidia-smi memory.used sampler (100 ms):
#   1. qforge quantize --device cuda, whole model, then --layerwise (weights streamed from host memory);
#      its phase summary ("time: load ..., calibration forward ..., packing ..., write ..., total ...");
#   2. ModelOpt (bench/gpu/modelopt_ptq.py): transformers load, mtq.quantize with ModelOpt's own forward loop,
#      export_hf_checkpoint; whole model on the GPU, then layerwise calibration with the model offloaded to
#      CPU memory by accelerate (GPU capped at GPU_CAP_GIB, 6 GiB);
#   3. PyTorch (bench/gpu/torch_floor.py): plain forward over the same batches (decoder only, and full
#      logits), and cuBLAS bf16 GEMMs at the model's shapes;
# then writes the table of every phase and issue 10's ratios (bench/gpu/report.py) to OUTFILE (default
# $OUT/gpu_e2e.md, else /tmp/gpu_e2e.md) and prints it; logs, JSON and memory samples go to
# OUTFILE's folder as gpu_e2e_logs.tar.gz. Every export passes through `qforge check` (off: QF_BENCH_CHECK=0).
#
# Before the device call, here:
#   scripts/build_cuda.sh qforge           # .gpu/qforge + .gpu/lib, and .gpu/run.sh that runs it with them
#   tools/fetch_bench_wheels.sh            # .whl/ (ModelOpt 0.47 + missing deps, 21 MiB), .bench/ (text, ids)
# The device call: one run, carry [".gpu", ".whl", ".bench"], timeout_s 600:
#   set -o pipefail; QF_GEN=torch bash bench/gpu_e2e.sh $OUT/gpu_e2e.md 2>&1 | tee $OUT/gpu_e2e.log
# Expected wall time about 6 minutes plus qforge's own runs: model 45 s (QF_GEN=torch; synth-model ~190 s
# at the 43M parameters/s it ran on that machine's CPU), ModelOpt whole ~100 s (of which 17 s import and a
# one-time 52 s nvcc build of its FP8 extension, neither counted), ModelOpt layerwise + offload ~65 s,
# PyTorch ~35 s, each `qforge check` and export removal a few seconds.
# Validated on the H200 on 2026-12-01 at 4 layers of this shape, ModelOpt + PyTorch half (no CUDA qforge
# yet): every stage ran, both ModelOpt exports pass `qforge check`, cuBLAS bf16 at 661-772 TFLOP/s.
#
# Usage: bench/gpu_e2e.sh [OUTFILE]
# Environment (defaults in brackets):
#   QF            the qforge command, word-split [".gpu/run.sh .gpu/qforge" if there, else build/qforge/cli/qforge]
#   QF_DEVICE     value of qforge's --device [cuda]; empty: no --device flag (the CPU build)
#   QF_GEN        qforge: `qforge synth-model` (one thread: 43M parameters/s on the GPU machine, ~190 s for
#                 8B); torch: bench/gpu/gen_model.py, the same config.json, tensor names, order, shards and
#                 distributions, drawn on the GPU (1.9B parameters in 10 s there) [qforge]
#   STAGES        comma list of qforge,layerwise,modelopt,modelopt_lw,torch [all]
#   WORK          work folder (model, exports, logs) [/tmp/qf_gpu_e2e]; an existing model there is reused
#   LAYERS HIDDEN INTER HEADS KV_HEADS VOCAB   model shape [32 4096 14336 32 8 128256]
#   SAMPLES SEQ BATCH   calibration [512 512 16]; BATCH is the same for qforge, ModelOpt and PyTorch
#   RECIPE        [general/ptq/nvfp4_default-kv_fp8]      GPU_CAP_GIB  ModelOpt offload cap [6]
#   QF_LW_ARGS    extra qforge --layerwise flags [--activation-memory 34359738368: no activation spill]
#   KEEP_EXPORTS  1: keep the exports in WORK (to compare runs) instead of removing each after its check [0]
#   STAGE_TIMEOUT seconds per run [240]        PY_DEVICE  device of the Python runs [cuda] (cpu: a dry run)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
OUTFILE=${1:-${OUT:-/tmp}/gpu_e2e.md}
mkdir -p "$(dirname "$OUTFILE")"
W=${WORK:-/tmp/qf_gpu_e2e}
LAYERS=${LAYERS:-32} HIDDEN=${HIDDEN:-4096} INTER=${INTER:-14336} HEADS=${HEADS:-32} KV_HEADS=${KV_HEADS:-8}
VOCAB=${VOCAB:-128256} SAMPLES=${SAMPLES:-512} SEQ=${SEQ:-512} BATCH=${BATCH:-16}
RECIPE=${RECIPE:-general/ptq/nvfp4_default-kv_fp8}
GPU_CAP_GIB=${GPU_CAP_GIB:-6}
QF_GEN=${QF_GEN:-qforge}
QF_DEVICE=${QF_DEVICE-cuda}
QF_LW_ARGS=${QF_LW_ARGS:---activation-memory 34359738368}
STAGES=${STAGES:-qforge,layerwise,modelopt,modelopt_lw,torch}
STAGE_TIMEOUT=${STAGE_TIMEOUT:-240}
PY_DEVICE=${PY_DEVICE:-cuda}
CHECK=${QF_BENCH_CHECK:-1}
if [ -z "${QF:-}" ]; then
  if [ -x .gpu/run.sh ] && [ -x .gpu/qforge ]; then QF=".gpu/run.sh .gpu/qforge"; else QF=build/qforge/cli/qforge; fi
fi
read -r -a QFC <<<"$QF"
DEVFLAG=()
[ -n "$QF_DEVICE" ] && DEVFLAG=(--device "$QF_DEVICE")
M=$W/model
mkdir -p "$W/logs"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
SKIPPED=""
has_stage() { [[ ",$STAGES," == *",$1,"* ]]; }
log() { printf '[gpu_e2e %(%H:%M:%S)T] %s\n' -1 "$*"; }
skip() { SKIPPED="$SKIPPED${SKIPPED:+; }$1"; log "skip: $1"; }

# --- environment: wheels, versions, idle GPU memory ---------------------------------------------------------
if ! python3 -c "import modelopt" 2>/dev/null && compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl &&
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
PY_VERSIONS=$(python3 - <<'EOF' 2>&1 | tail -1
import importlib.metadata as md, sys
def v(n):
    try: return md.version(n)
    except Exception: return "missing"
te = v("typing-extensions")
ok = te != "missing" and tuple(int(x) for x in te.split(".")[:3]) >= (4, 14, 1)
print(f"python {sys.version.split()[0]}, torch {v('torch')}, transformers {v('transformers')}, nvidia-modelopt "
      f"{v('nvidia-modelopt')}, accelerate {v('accelerate')}, pydantic {v('pydantic')}, typing-extensions {te}"
      + ("" if ok else " (pydantic 2.13 needs >= 4.14.1)"))
EOF
)
log "$PY_VERSIONS"
GPU=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
IDLE_MIB=$(nvidia-smi -i 0 --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1)
HOST="$(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GiB RAM, $(df -BG --output=avail "$W" | tail -1 | tr -d ' ') free in $W"
log "GPU: ${GPU:-none}; idle memory.used ${IDLE_MIB:-?} MiB; $HOST"
QF_VERSION=$("${QFC[@]}" version 2>&1 | head -1) || QF_VERSION=""
QF_OK=0
if [ -n "$QF_VERSION" ] && "${QFC[@]}" version >/dev/null 2>&1; then
  QF_OK=1
  if [ -n "$QF_DEVICE" ] && ! "${QFC[@]}" quantize --help 2>/dev/null | grep -q -- '--device'; then
    log "qforge ($QF) has no quantize --device flag: the qforge runs are skipped (set QF_DEVICE= for a CPU run)"
    QF_OK=2
  fi
else
  log "no working qforge at '$QF' ($QF_VERSION): the qforge runs are skipped"
fi

# Peak GPU memory of one run: nvidia-smi memory.used every 100 ms, line-buffered so a kill loses no sample.
POLL_PID=""
start_poll() {
  POLL_PID=""
  command -v nvidia-smi >/dev/null || return 0
  local sb=()
  command -v stdbuf >/dev/null && sb=(stdbuf -oL)
  "${sb[@]}" nvidia-smi -i 0 --query-gpu=timestamp,memory.used --format=csv,noheader,nounits -lms 100 >"$1" 2>/dev/null &
  POLL_PID=$!
}
stop_poll() {
  [ -n "$POLL_PID" ] || return 0
  sleep 0.3
  kill -INT "$POLL_PID" 2>/dev/null
  wait "$POLL_PID" 2>/dev/null
  POLL_PID=""
}
trap 'stop_poll' EXIT
now() { date +%s.%N; }

# --- the model -----------------------------------------------------------------------------------------------
want_cfg="\"hidden_size\": $HIDDEN,|\"num_hidden_layers\": $LAYERS,|\"intermediate_size\": $INTER,|\"vocab_size\": $VOCAB"
model_ok() {
  [ -f "$M/config.json" ] && [ -f "$M/model.safetensors.index.json" ] || return 1
  local n
  n=$(grep -cE "$want_cfg" "$M/config.json")
  [ "$n" -eq 4 ]
}
if model_ok; then
  log "reusing the model in $M"
else
  rm -rf "$M"
  t0=$(now)
  if [ "$QF_GEN" = qforge ] && [ $QF_OK -ge 1 ]; then
    "${QFC[@]}" synth-model --out "$M" --hidden "$HIDDEN" --layers "$LAYERS" --intermediate "$INTER" \
      --heads "$HEADS" --kv-heads "$KV_HEADS" --vocab "$VOCAB" --shard-mb 4096 2>&1 | tee "$W/logs/gen.log"
    GEN="qforge synth-model"
  else
    [ "$QF_GEN" = qforge ] && log "no qforge to run synth-model: bench/gpu/gen_model.py writes the same layout"
    python3 bench/gpu/gen_model.py --out "$M" --hidden "$HIDDEN" --layers "$LAYERS" --intermediate "$INTER" \
      --heads "$HEADS" --kv-heads "$KV_HEADS" --vocab "$VOCAB" --shard-mb 4096 2>&1 | tee "$W/logs/gen.log"
    GEN="bench/gpu/gen_model.py (synth-model's layout)"
  fi
  model_ok || { log "model generation failed (see $W/logs/gen.log)"; exit 1; }
  log "model written in $(awk "BEGIN {printf \"%.1f\", $(now) - $t0}") s"
fi
GEN=${GEN:-"reused $M"}
# qforge reads its calibration text with the model's tokenizer; the random model has none, so it gets
# llama-dense-26M's (8192 ids < vocab). ModelOpt and PyTorch take the ids qforge cuts from that text.
cp -f .bench/tokenizer.json .bench/tokenizer_config.json "$M/" 2>/dev/null || log "no .bench/tokenizer.json: run tools/fetch_bench_wheels.sh"
MODEL_BYTES=$(du -sb "$M" | cut -f1)

# --- the token ids -------------------------------------------------------------------------------------------
IDS=$W/calib_ids.txt
IDS_SOURCE=""
if [ $QF_OK -ge 1 ] && "${QFC[@]}" tokenize --model "$M" --text .bench/calib.txt >"$IDS" 2>"$W/logs/tokenize.log"; then
  IDS_SOURCE="qforge tokenize of .bench/calib.txt on this machine"
  if [ -f .bench/calib_ids.txt ] && ! cmp -s "$IDS" .bench/calib_ids.txt; then
    log "warning: the ids differ from .bench/calib_ids.txt (tokenized where the wheels were fetched)"
    IDS_SOURCE="$IDS_SOURCE (differs from .bench/calib_ids.txt)"
  fi
elif [ -f .bench/calib_ids.txt ]; then
  cp .bench/calib_ids.txt "$IDS"
  IDS_SOURCE="qforge tokenize of .bench/calib.txt, staged by tools/fetch_bench_wheels.sh"
else
  log "no token ids: run tools/fetch_bench_wheels.sh"; exit 1
fi
log "token ids: $(wc -w <"$IDS") ($IDS_SOURCE); the first $SAMPLES x $SEQ are the calibration samples"

cat >"$W/bench.env" <<EOF
HIDDEN=$HIDDEN
LAYERS=$LAYERS
INTER=$INTER
HEADS=$HEADS
KV_HEADS=$KV_HEADS
VOCAB=$VOCAB
SAMPLES=$SAMPLES
SEQ=$SEQ
BATCH=$BATCH
RECIPE=$RECIPE
GPU_CAP_GIB=$GPU_CAP_GIB
IDLE_MIB=${IDLE_MIB:-0}
GPU=$GPU
HOST=$HOST
GEN=$GEN
MODEL_BYTES=$MODEL_BYTES
IDS_SOURCE=$IDS_SOURCE
QF=$QF
QF_DEVICE_FLAG=${DEVFLAG[*]}
QF_VERSION=$QF_VERSION
PY_VERSIONS=$PY_VERSIONS
EOF

check_export() {  # check_export DIR NAME: `qforge check` of an export, recorded in NAME.meta
  [ "$CHECK" = 1 ] && [ $QF_OK -ge 1 ] && [ -f "$1/config.json" ] || return 0
  if "${QFC[@]}" check "$1" >"$W/logs/check_$2.log" 2>&1; then echo "check=passes" >>"$W/logs/$2.meta"
  else echo "check=**fails** (logs/check_$2.log)" >>"$W/logs/$2.meta"; fi
}
finish_export() {  # finish_export DIR NAME: size and check, then remove (disk: 64 GiB for 4 exports + model)
  [ -d "$1" ] || return 0
  echo "export_bytes=$(du -sb "$1" | cut -f1)" >>"$W/logs/$2.meta"
  check_export "$1" "$2"
  cp -f "$1/hf_quant_config.json" "$W/logs/$2.hf_quant_config.json" 2>/dev/null
  [ "${KEEP_EXPORTS:-0}" = 1 ] || rm -rf "$1"
}

# --- 1. qforge -----------------------------------------------------------------------------------------------
run_qforge() {  # run_qforge NAME extra-flags...
  local name=$1 t0 rc
  shift
  log "qforge $name: ${QFC[*]} quantize ${DEVFLAG[*]} $*"
  start_poll "$W/mem_qf_$name.csv"
  t0=$(now)
  timeout "$STAGE_TIMEOUT" "${QFC[@]}" quantize --model "$M" --recipe "$RECIPE" --calib .bench/calib.txt \
    --calib-size "$SAMPLES" --calib-seq-len "$SEQ" --batch-size "$BATCH" --export "$W/exp_qf_$name" --overwrite \
    --no-progress "${DEVFLAG[@]}" "$@" >"$W/logs/qf_$name.log" 2>&1
  rc=$?
  local wall
  wall=$(awk "BEGIN {printf \"%.2f\", $(now) - $t0}")
  stop_poll
  printf 'rc=%s\nwall_s=%s\n' "$rc" "$wall" >"$W/logs/qf_$name.meta"
  grep -E '^(time:|peak RSS|calibration:|layerwise:)' "$W/logs/qf_$name.log"
  [ $rc = 0 ] || tail -5 "$W/logs/qf_$name.log"
  log "qforge $name: exit $rc, ${wall} s wall"
  finish_export "$W/exp_qf_$name" "qf_$name"
}
if [ $QF_OK = 1 ]; then
  if has_stage qforge; then run_qforge whole; fi
  # shellcheck disable=SC2086
  if has_stage layerwise; then run_qforge layerwise --layerwise $QF_LW_ARGS; fi
else
  skip "qforge whole and --layerwise (no qforge with --device ${QF_DEVICE:-<none>} at '$QF')"
fi

# --- 2. ModelOpt ---------------------------------------------------------------------------------------------
run_py() {  # run_py NAME script args...: one Python run with its memory sampler
  local name=$1 t0 rc wall
  shift
  log "$name: python3 $*"
  start_poll "$W/mem_$name.csv"
  t0=$(now)
  timeout "$STAGE_TIMEOUT" python3 "$@" >"$W/logs/$name.log" 2>&1
  rc=$?
  wall=$(awk "BEGIN {printf \"%.2f\", $(now) - $t0}")
  stop_poll
  printf 'rc=%s\nwall_s=%s\n' "$rc" "$wall" >"$W/logs/$name.meta"
  grep -E '^\[[a-z_.]+\] [0-9.]+s|device_map:' "$W/logs/$name.log"
  [ $rc = 0 ] || tail -25 "$W/logs/$name.log"
  log "$name: exit $rc, ${wall} s wall"
}
if python3 -c "import importlib.util as u, sys; sys.exit(u.find_spec('modelopt') is None)" 2>/dev/null; then
  if has_stage modelopt; then
    run_py mo_whole bench/gpu/modelopt_ptq.py --model "$M" --ids "$IDS" --samples "$SAMPLES" --seq "$SEQ" \
      --batch "$BATCH" --device "$PY_DEVICE" --recipe "$RECIPE" --export "$W/exp_mo_whole" --json "$W/mo_whole.json"
    finish_export "$W/exp_mo_whole" mo_whole
  fi
  if has_stage modelopt_lw; then
    run_py mo_layerwise bench/gpu/modelopt_ptq.py --model "$M" --ids "$IDS" --samples "$SAMPLES" --seq "$SEQ" \
      --batch "$BATCH" --device "$PY_DEVICE" --recipe "$RECIPE" --export "$W/exp_mo_layerwise" --json "$W/mo_layerwise.json" \
      --layerwise --gpu-mem-gib "$GPU_CAP_GIB"
    finish_export "$W/exp_mo_layerwise" mo_layerwise
  fi
else
  skip "ModelOpt (no modelopt package: run tools/fetch_bench_wheels.sh and carry .whl)"
fi

# --- 3. PyTorch ----------------------------------------------------------------------------------------------
if has_stage torch; then
  run_py torch bench/gpu/torch_floor.py --model "$M" --ids "$IDS" --samples "$SAMPLES" --seq "$SEQ" \
    --batch "$BATCH" --device "$PY_DEVICE" --json "$W/torch.json"
fi

# --- the table -----------------------------------------------------------------------------------------------
[ -n "$SKIPPED" ] && echo "SKIPPED=$SKIPPED" >>"$W/bench.env"
python3 bench/gpu/report.py --work "$W" --out "$OUTFILE"
extra=()
for f in "$W"/*.json "$W"/*.csv; do [ -f "$f" ] && extra+=("$(basename "$f")"); done
tar -C "$W" -czf "$(dirname "$OUTFILE")/gpu_e2e_logs.tar.gz" logs bench.env calib_ids.txt "${extra[@]}"
log "table: $OUTFILE; logs: $(dirname "$OUTFILE")/gpu_e2e_logs.tar.gz"
