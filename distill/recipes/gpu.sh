#!/usr/bin/env bash
# The default recipe as one prepared run on a single GPU inside a fixed wall-clock budget (issues 10, 11):
# the Lite2 teacher (teacher.yaml), then the Lite0 student distilled from it (default.yaml) side by side with
# the same student trained without the teacher (default-direct.yaml, the comparison baseline).
#
#   python -m distill pack --out runs/pack                  # here: shrunk data + fp16 ImageNet trunks
#   bash distill/recipes/gpu.sh runs/pack runs/gpu 540      # there: PACK OUT BUDGET_SECONDS
#
# Step counts are the configs' stages scaled to the budget: a 40-step probe of the teacher measures this
# machine's rate first, since the data pipeline (edits on CPU workers), not the GPU, sets the pace.
# Every run is also bounded by `timeout -s INT` (a clean stop that writes last.pt), so the budget holds
# even where the estimate is off; OUT/<run>/ keeps metrics.jsonl and the checkpoints.
set -uo pipefail
PACK=${1:?usage: gpu.sh PACK OUT BUDGET_SECONDS}
OUT=${2:?usage: gpu.sh PACK OUT BUDGET_SECONDS}
BUDGET=${3:?usage: gpu.sh PACK OUT BUDGET_SECONDS}
CORES=${CORES:-$(nproc)}
export REDAES_PYPI_WEIGHTS=$PACK/weights PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
# TEACHER_STEPS / STUDENT_STEPS skip the probe; DIRECT=0 skips the baseline.
# PROBE_STEPS, MIN_STEPS and EXTRA_SET (more --set flags for every run) exist to rehearse this on a CPU.
DATA=(--set "data.photos=$PACK/photos" --set "data.biq2021=$PACK/biq2021" ${EXTRA_SET:-})
PROBE=${PROBE_STEPS:-40}
mkdir -p "$OUT"
start=$SECONDS
left() { echo $((BUDGET - (SECONDS - start))); }
say() { echo "[gpu.sh +$((SECONDS - start))s] $*" >&2; }
# steps_for STEPS_PER_S SECONDS FACTOR -> steps (at least MIN_STEPS)
steps_for() { python3 -c "import sys; r,s,f=map(float,sys.argv[1:4]); print(max(int(sys.argv[4]), int(r*s*f)))" "$@" "${MIN_STEPS:-20}"; }
last_rate() { python3 -c "
import json,sys
rates=[r['steps_per_s'] for r in map(json.loads, open(sys.argv[1])) if r.get('kind')=='train']
print(rates[-1] if rates else 0.1)" "$1/metrics.jsonl"; }
train() {  # train SECONDS CONFIG OUT ARGS...
  local secs=$1 cfg=$2 out=$3; shift 3
  say "train $cfg -> $out (${secs}s) $*"
  timeout -s INT -k 30 "$secs" python3 -m distill train "$cfg" --out "$out" "${DATA[@]}" "$@"
}
finish() {  # finish CONFIG OUT LAST_STAGE ARGS...: a run cut short at step S ends there, with its final fits
  local cfg=$1 out=$2 last=$3; shift 3
  [ -f "$out/final.pt" ] || [ ! -f "$out/last.pt" ] && return 0
  local step set
  step=$(python3 -c "import sys,torch; print(torch.load(sys.argv[1], weights_only=True)['step'])" "$out/last.pt")
  # The last stage (or the whole run) is shortened so that the run's total is the step it reached.
  set=$(python3 -c "
import sys
from distill.config import load_config
cfg = load_config(sys.argv[1], overrides=[a for a in sys.argv[4:] if a != '--set'])
step, last = int(sys.argv[2]), int(sys.argv[3])
if not cfg.stages: print(f'steps={step}')
else: print(f'stages.{last}.steps={step - sum(s.steps for i, s in enumerate(cfg.stages) if i != last)}')
" "$cfg" "$step" "$last" "${DATA[@]}" "$@")
  say "finish $out at step $step ($set)"
  python3 -m distill train "$cfg" --out "$out" --resume "${DATA[@]}" "$@" --set "$set"
}

teacher_workers=$(( (CORES - 2) / 2 ))
if [ -z "${TEACHER_STEPS:-}" ]; then
  train 120 distill/configs/teacher.yaml "$OUT/probe" --set num_workers=$teacher_workers --set val.every=100000 \
    --set log_every=$(( PROBE < 10 ? 1 : 10 )) --until $PROBE || { say "probe failed"; exit 3; }
  rate=$(last_rate "$OUT/probe")
  rm -rf "$OUT/probe"
  say "teacher rate $rate steps/s; $(left)s left"
fi
# Teacher: 45 % of what is left (minus its start-up and end-of-run fits), or TEACHER_STEPS.
t_secs=$(( $(left) * 45 / 100 ))
t_steps=${TEACHER_STEPS:-$(steps_for "$rate" $((t_secs - 45)) 1.0)}
targs=(--set num_workers=$teacher_workers --set steps=$t_steps --set optim.warmup_steps=$((t_steps / 15))
       --set val.every=$((t_steps / 3)))
train $((t_secs + 30)) distill/configs/teacher.yaml "$OUT/teacher" "${targs[@]}"
finish distill/configs/teacher.yaml "$OUT/teacher" 0 "${targs[@]}"
teacher=$OUT/teacher/final.pt
[ -f "$teacher" ] || { say "no teacher checkpoint"; exit 4; }
python3 -m distill slim "$teacher" --out "$OUT/teacher/teacher-lite2.pt"

# Students, side by side: distilled (4 sources) and direct (2 sources); the direct run has fewer images
# per step in its first stages, so the same step count ends sooner. Rates: the student's batches carry
# 40-72 images and the teacher's pixels (48 per teacher step), on half the workers each.
s_secs=$(( $(left) - 75 ))  # room for the end-of-run fits of a run cut short
s_steps=${STUDENT_STEPS:-$(steps_for "$rate" $((s_secs - 60)) 0.40)}
stages=(--set "stages.0.steps=$((s_steps / 5))" --set "stages.1.steps=$((s_steps * 3 / 10))"
        --set "stages.2.steps=$((s_steps - s_steps / 5 - s_steps * 3 / 10))" --set "optim.warmup_steps=$((s_steps / 40))"
        --set "val.every=$((s_steps / 4))")
w=$(( (CORES - 2) / (${DIRECT:-1} == 1 ? 6 : 4) )); [ "$w" -ge 1 ] || w=1
dargs=(--set num_workers=$w "${stages[@]}" --set "sources.teacher_edit.teacher=$teacher"
       --set "sources.teacher_cross.teacher=$teacher")
(train "$s_secs" distill/configs/default.yaml "$OUT/default" "${dargs[@]}"
 finish distill/configs/default.yaml "$OUT/default" 2 "${dargs[@]}") &
d=$!
if [ "${DIRECT:-1}" = 1 ]; then  # DIRECT=0: the distilled student alone, on every worker
  (train "$s_secs" distill/configs/default-direct.yaml "$OUT/direct" --set num_workers=$((w + 1)) "${stages[@]}"
   finish distill/configs/default-direct.yaml "$OUT/direct" 2 --set num_workers=$((w + 1)) "${stages[@]}") &
  wait $!
fi
wait $d
say "done; $(left)s of the budget left"
