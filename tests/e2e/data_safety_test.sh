#!/usr/bin/env bash
# Data safety end to end: qforge never deletes or replaces what the user did not ask it to, replacing an
# export is crash-safe (SIGKILL at every step leaves the old or the new export), SIGINT / SIGTERM remove the
# temporaries and exit non-zero, stale temporaries of killed runs are cleaned, one run per checkpoint
# directory, checkpoint files carry checksums, and a copied model still resumes (content fingerprint).
# Usage: data_safety_test.sh QFORGE SHARED_DIR
set -u
Q=$1
S=$2
W=$(mktemp -d /tmp/qf_data_safety.XXXXXX)
trap 'rm -rf "$W"' EXIT
fail=0
M=$W/model  # a private copy: a failure must never touch ../shared
cp -r "$S/data/models/stories260K/hf" "$M"
T=$S/data/text/janeausten/emma.txt
DEAD=99999999  # above Linux's PID_MAX_LIMIT: never a live process

ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }
digest() { (cd "$1" && find . -type f ! -name '.qforge-checkpoint.lock' -print0 | sort -z | xargs -0 sha256sum) | sha256sum; }
quant() {  # quant OUT [extra args...]: fp8 W8A8 + FP8 KV of stories260K, a second or so (CS=calibration samples)
  local out=$1
  shift
  "$Q" quantize --model "$M" --qformat fp8 --kv-cache-qformat fp8 --calib "$T" --calib-size "${CS:-4}" \
    --calib-seq-len 32 --batch-size 2 --export "$out" --no-progress "$@" >"$W/log" 2>&1
}
expect_refused() {  # expect_refused WHAT PATTERN cmd... (quant writes $W/log itself; others are captured)
  local what=$1 pat=$2
  shift 2
  if [ "$1" = quant ]; then "$@"; else "$@" >"$W/log" 2>&1; fi
  local rc=$?
  if [ $rc -eq 1 ] && grep -q -- "$pat" "$W/log"; then ok "$what"; else bad "$what (exit $rc)"; cat "$W/log"; fi
}
no_temporaries() {  # no_temporaries DIR WHAT
  if ls -a "$1" | grep -qE '\.(tmp|old)\.[0-9]+$'; then bad "$2: temporaries left: $(ls -a "$1" | tr '\n' ' ')"; else ok "$2: no temporaries left"; fi
}

model_digest=$(digest "$M")

# 1. Refusals, all before calibration starts (the log has no calibration line).
quant "$W/out" || { bad "first export"; cat "$W/log"; }
first=$(digest "$W/out")
expect_refused "existing export needs --overwrite" "pass --overwrite" quant "$W/out"
[ "$(digest "$W/out")" = "$first" ] && ok "refused export left untouched" || bad "refused export changed"
if grep -q "calibration:" "$W/log"; then bad "refusal came after calibration"; else ok "refused before calibration"; fi
expect_refused "--export = model dir" "which this run reads" quant "$M" --overwrite
expect_refused "--export = parent of the model dir" "contains" quant "$W" --overwrite
ln -s "$M" "$W/model-link"
expect_refused "--export = symlink to the model dir" "which this run reads" quant "$W/model-link" --overwrite
mkdir -p "$W/photos" && echo keep >"$W/photos/a.jpg"
expect_refused "non-export directory, even with --overwrite" "not a qforge/HF export" quant "$W/photos" --overwrite
[ "$(cat "$W/photos/a.jpg")" = keep ] && ok "user directory intact" || bad "user directory changed"
echo x >"$W/afile"
expect_refused "--export is a file" "not a directory" quant "$W/afile" --overwrite
expect_refused "--checkpoint-dir = model dir" "which this run reads" quant "$W/out2" --layerwise --checkpoint-dir "$M"
expect_refused "--checkpoint-dir inside the export" "contains" quant "$W/out" --overwrite --layerwise --checkpoint-dir "$W/out/ck"
expect_refused "--checkpoint-dir holding someone else's files" "not a qforge layerwise checkpoint" \
  quant "$W/out2" --layerwise --checkpoint-dir "$W/photos" --restart
[ "$(cat "$W/photos/a.jpg")" = keep ] && ok "--restart deleted nothing foreign" || bad "--restart deleted user files"
[ "$(digest "$M")" = "$model_digest" ] && ok "model directory intact" || bad "model directory changed"

# 2. --overwrite replaces an earlier export, atomically, leaving nothing beside it.
CS=2 quant "$W/out" --overwrite || { bad "--overwrite"; cat "$W/log"; }
second=$(digest "$W/out")
[ "$second" != "$first" ] && ok "--overwrite replaced the export" || bad "--overwrite did not replace"
"$Q" check "$W/out" >/dev/null 2>&1 && ok "replaced export passes check" || bad "replaced export fails check"
no_temporaries "$W" "--overwrite"

# 3. SIGKILL at every step of a replace: the final path holds the old or the new export, never neither.
#    dir_commit:1 = before the swap (old stays), dir_commit:2 = after it (new is in place); without
#    RENAME_EXCHANGE, dir_commit_moved_aside:1 = old moved aside, new not yet in place (next run restores).
for k in dir_commit:1 dir_commit:2; do
  (QF_TEST_KILL_AT=$k CS=3 quant "$W/out" --overwrite) 2>/dev/null
  rc=$?
  got=$(digest "$W/out")
  if [ $rc -ne 137 ]; then bad "kill at $k: exit $rc"; fi
  if [ "$got" = "$second" ] || "$Q" check "$W/out" >/dev/null 2>&1; then ok "SIGKILL at $k: a complete export in place"; else bad "SIGKILL at $k: export broken"; fi
  second=$got
done
(QF_TEST_NO_RENAME_EXCHANGE=1 QF_TEST_KILL_AT=dir_commit_moved_aside:1 CS=5 quant "$W/out" --overwrite) 2>/dev/null
[ ! -e "$W/out" ] && ls "$W" | grep -q '^out\.old\.' && ok "fallback replace killed mid-way: old export aside" ||
  bad "fallback kill did not leave the old export aside"
expect_refused "next run restores the old export, then refuses without --overwrite" "pass --overwrite" quant "$W/out"
[ "$(digest "$W/out")" = "$second" ] && ok "old export restored intact" || bad "old export not restored"
no_temporaries "$W" "after recovery"

# 4. Stale temporaries of a dead process are cleaned (and reported); a live process's are left alone.
mkdir -p "$W/out.tmp.$DEAD" "$W/out.tmp.1"
quant "$W/out" --overwrite || { bad "export with stale temporaries"; cat "$W/log"; }
grep -q "removed '$W/out.tmp.$DEAD'" "$W/log" && ok "stale temporary reported" || { bad "stale temporary not reported"; cat "$W/log"; }
[ ! -e "$W/out.tmp.$DEAD" ] && [ -e "$W/out.tmp.1" ] && ok "dead run's temporary removed, pid 1's kept" || bad "stale cleanup"
rmdir "$W/out.tmp.1"

# 5. SIGINT / SIGTERM during a write: temporaries removed, exit 128+signal, old export kept.
before=$(digest "$W/out")
(QF_TEST_KILL_AT=dir_commit:1:INT CS=3 quant "$W/out" --overwrite) 2>/dev/null
rc=$?
[ $rc -eq 130 ] && ok "SIGINT exits 130" || bad "SIGINT exit $rc"
grep -q "interrupted by SIGINT: removed" "$W/log" && ok "SIGINT says what it removed" || { bad "no interrupt message"; cat "$W/log"; }
[ "$(digest "$W/out")" = "$before" ] && ok "SIGINT kept the old export" || bad "SIGINT changed the export"
no_temporaries "$W" "SIGINT"
(QF_TEST_KILL_AT=layer_file:3:TERM quant "$W/lw" --layerwise --checkpoint-dir "$W/ck" --save-every 2) 2>/dev/null
rc=$?
[ $rc -eq 143 ] && ok "SIGTERM during layerwise exits 143" || { bad "SIGTERM exit $rc"; cat "$W/log"; }
no_temporaries "$W/ck" "SIGTERM in a layer directory"
[ ! -e "$W/lw" ] && ok "no export after SIGTERM" || bad "export exists after SIGTERM"

# 6. One run per checkpoint directory: a stopped run holds the lock; a second run and --restart are refused.
QF_TEST_KILL_AT=layer_calibrated:1:STOP "$Q" quantize --model "$M" --qformat fp8 --kv-cache-qformat fp8 --calib "$T" \
  --calib-size 4 --calib-seq-len 32 --batch-size 2 --export "$W/lw" --no-progress --layerwise \
  --checkpoint-dir "$W/ck" --save-every 2 >/dev/null 2>&1 &
held=$!
for _ in $(seq 200); do [ "$(ps -o stat= -p $held 2>/dev/null | cut -c1)" = T ] && break; sleep 0.05; done
[ "$(ps -o stat= -p $held 2>/dev/null | cut -c1)" = T ] && ok "first run stopped holding the lock" || bad "first run did not stop"
expect_refused "second run on a locked checkpoint" "in use by another qforge run" quant "$W/lw2" --layerwise --checkpoint-dir "$W/ck"
expect_refused "--restart on a locked checkpoint" "in use by another qforge run" quant "$W/lw2" --layerwise --checkpoint-dir "$W/ck" --restart
kill -KILL $held 2>/dev/null
wait $held 2>/dev/null

# 7. A copied model (new mtimes, new path) resumes the checkpoint: the fingerprint hashes content.
(QF_TEST_KILL_AT=after_manifest:1 quant "$W/lw" --layerwise --checkpoint-dir "$W/ck" --save-every 2) 2>/dev/null
cp -r "$M" "$W/model-copy"
touch "$W/model-copy"/*
"$Q" quantize --model "$W/model-copy" --qformat fp8 --kv-cache-qformat fp8 --calib "$T" --calib-size 4 \
  --calib-seq-len 32 --batch-size 2 --export "$W/lw" --no-progress --layerwise --checkpoint-dir "$W/ck" \
  --save-every 2 >"$W/log" 2>&1 && grep -q "(resumed)" "$W/log" && ok "copied, touched model resumes" ||
  { bad "copied model did not resume"; cat "$W/log"; }
quant "$W/whole" || bad "whole-model export"
diff -r "$W/whole" "$W/lw" >/dev/null && ok "resumed layerwise export == whole-model export" || bad "resumed export differs"

# 8. Checksums: a byte flipped in a committed layer file is detected on resume, naming the file.
(QF_TEST_KILL_AT=after_manifest:1 quant "$W/lw3" --layerwise --checkpoint-dir "$W/ck3" --save-every 2) 2>/dev/null
f="$W/ck3/layer_0000/quantizer_buffers.safetensors"
python3 - "$f" <<'EOF'
import sys
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
b[-1] ^= 0x01
open(p, 'wb').write(bytes(b))
EOF
expect_refused "corrupted checkpoint file detected" "quantizer_buffers.safetensors' does not match its checksum" \
  quant "$W/lw3" --layerwise --checkpoint-dir "$W/ck3" --save-every 2
python3 - "$W/ck3/manifest.json" <<'EOF'
import json, sys
p = sys.argv[1]
j = json.load(open(p))
j['last_completed_layer'] = j['num_layers'] - 1  # pretend the run finished
open(p, 'w').write(json.dumps(j, indent=2))
EOF
expect_refused "hand-edited manifest refused by export --from" "checksum does not match" \
  "$Q" export --from "$W/ck3" --model "$M" --export "$W/lw3"

[ "$(digest "$M")" = "$model_digest" ] && ok "model directory intact at the end" || bad "model directory changed"
if [ $fail -eq 0 ]; then echo "data safety: all checks passed"; fi
exit $fail
