#!/usr/bin/env bash
# The default recipe of issues 10 and 11 as one prepared run on a single lent GPU, on a packed copy of the data:
# the Lite2 teacher (teacher.yaml) beside the student trained directly (default.yaml), then the same student
# distilled from that teacher (default-distilled.yaml); RANDOM_INIT=1 adds default.yaml from random
# initialisation (the comparison's first row) beside the distilled one.
#
#   python -m distill pack --out runs/pack                  # here: shrunk data + fp16 ImageNet trunks (55 MiB)
#   bash distill/recipes/gpu.sh runs/pack runs/gpu          # there (H100: 285 s + 150 s measured)
#
# The steps are the configs' own; TEACHER_SET, DIRECT_SET and DISTILLED_SET add --set flags to one run each,
# EXTRA_SET to every run (e.g. to rehearse this on a CPU with a few steps). Every run is bounded by
# `timeout -s INT` (TEACHER_LIMIT / STUDENT_LIMIT seconds, default LIMIT = 600: a clean stop that writes last.pt)
# and then ends where it stopped with its end-of-run fits, so a slower machine still returns usable final.pt
# files. OUT/<run>/ keeps metrics.jsonl and the checkpoints; OUT/teacher/teacher-lite2.pt is the fp16 teacher
# artifact (distill/artifacts/).
set -uo pipefail
PACK=${1:?usage: gpu.sh PACK OUT}
OUT=${2:?usage: gpu.sh PACK OUT}
LIMIT=${LIMIT:-600}
TEACHER_LIMIT=${TEACHER_LIMIT:-$LIMIT}
STUDENT_LIMIT=${STUDENT_LIMIT:-$LIMIT}
CORES=${CORES:-$(nproc)}
export REDAES_PYPI_WEIGHTS=$PACK/weights PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
DATA=(--set "data.photos=$PACK/photos" --set "data.biq2021=$PACK/biq2021" ${EXTRA_SET:-})
mkdir -p "$OUT"
start=$SECONDS
say() { echo "[gpu.sh +$((SECONDS - start))s] $*" >&2; }

train() {  # train LIMIT CONFIG OUT ARGS...: bounded run, then its end-of-run fits at the step it reached
  local limit=$1 cfg=$2 out=$3; shift 3
  say "train $cfg -> $out $*"
  timeout -s INT -k 30 "$limit" python3 -m distill train "$cfg" --out "$out" "${DATA[@]}" "$@"
  [ -f "$out/final.pt" ] || [ ! -f "$out/last.pt" ] && return 0
  local sets
  # Each stage is cut where the run stopped (later ones to 0 steps): the run's total is the step it reached.
  mapfile -t sets < <(python3 -c "
import sys, torch
from distill.config import load_config
step = torch.load(sys.argv[2], weights_only=True)['step']
cfg = load_config(sys.argv[1], overrides=[a for a in sys.argv[3:] if a != '--set'])
if not cfg.stages:
    print(f'--set\nsteps={step}')
start = 0
for i, stage in enumerate(cfg.stages):
    print(f'--set\nstages.{i}.steps={min(stage.steps, max(0, step - start))}')
    start += stage.steps
" "$cfg" "$out/last.pt" "${DATA[@]}" "$@")
  say "finish $out (${sets[*]})"
  python3 -m distill train "$cfg" --out "$out" --resume "${DATA[@]}" "$@" "${sets[@]}"
}

# The direct student needs no teacher: it shares the machine with the teacher, then with the distilled one.
w=$(( (CORES - 2) / 2 )); [ "$w" -ge 1 ] || w=1
train "$TEACHER_LIMIT" distill/configs/default.yaml "$OUT/default" --set num_workers=$w ${DIRECT_SET:-} &
pids=($!)
train "$TEACHER_LIMIT" distill/configs/teacher.yaml "$OUT/teacher" --set num_workers=$w ${TEACHER_SET:-}
teacher=$OUT/teacher/final.pt
[ -f "$teacher" ] || { say "no teacher checkpoint"; wait; exit 4; }
python3 -m distill slim "$teacher" --out "$OUT/teacher/teacher-lite2.pt"

train "$STUDENT_LIMIT" distill/configs/default-distilled.yaml "$OUT/distilled" --set num_workers=$w ${DISTILLED_SET:-} \
  --set "sources.teacher_edit.teacher=$teacher" --set "sources.teacher_cross.teacher=$teacher" &
pids+=($!)
if [ "${RANDOM_INIT:-0}" = 1 ]; then
  train "$STUDENT_LIMIT" distill/configs/default.yaml "$OUT/random" --set num_workers=1 --set student.pretrained=null &
  pids+=($!)
fi
wait "${pids[@]}"
say "done"
