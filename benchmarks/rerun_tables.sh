#!/usr/bin/env bash
# The recommendation table (latkit/predictors/recommended.json) and the tables of benchmarks/RESULTS.md that read the shipped duet CPU datasets (predictors, additivity, cross-backend,
# transfer, duet leak, process age, label noise, graph counts), re-run after one of them changes: the commands
# RESULTS quotes beside those tables, in one place. Not here: the solo files' tables (benchmarks/predictors,
# throughput, duet_vs_solo), which no re-measurement touches. Run from anywhere in the repository, with campaigns
# stopped (it uses the cores CORES names, default both). Each command's output goes to runs/rerun/NAME.log (the
# scripts that print their tables only to the terminal: duet_leak, process_age, label_noise); the others also
# write their own folders under benchmarks/. Earlier measurements that some tables compare against come from git:
# OpenVINO's and batch 8's first duet files, and, given OLD_TORCH=<commit>, the torch file a re-measurement replaced.
# Arguments, if any, name the steps to run (e.g. the ones that read the dataset that changed); default: every step.
set -euo pipefail
cd "$(dirname "$0")/.."
ONLY=" $* "
STEPS=" recommend predictors_duet predictors_b8 predictors_torch interactions cross_backend transfer transfer_cse duet_leak \
process_age label_noise_ort_groups label_noise_ov_groups label_noise_b8_groups label_noise_torch_groups \
label_noise_ort_cse label_noise_ov_cse label_noise_b8_cse label_noise_torch_cse graph_counts graph_counts_b8 \
graph_counts_sn "
for a in "$@"; do
  [[ $STEPS == *" $a "* ]] || { echo "unknown step: $a (steps:$STEPS)" >&2; exit 2; }
  [[ $a != label_noise_torch_* || -n ${OLD_TORCH:-} ]] || { echo "$a needs OLD_TORCH=<commit>" >&2; exit 2; }
done

L=.venv/bin/latkit
PY=.venv/bin/python
T="taskset -c ${CORES:-0,1}"
D=datasets
SN=$D/onnxruntime_cpu_b1_r32_c16_l8.parquet
ORT=$D/onnxruntime_cpu_b1_r32_c36_l20.parquet
OV=$D/openvino_cpu_b1_r32_c36_l20.parquet
B8=$D/onnxruntime_cpu_b8_r32_c36_l20.parquet
TORCH=$D/torch_cpu_b1_r32_c36_l20.parquet
CG=$D/torch_cuda_graph_b1_r32_c36_l20.parquet
LOG=runs/rerun
mkdir -p "$LOG"
git show f7c79bc:$OV > "$LOG/ov_first_duet.parquet"
git show ea8a5c3:$B8 > "$LOG/b8_first_duet.parquet"

step() {  # step NAME COMMAND...: run it (unless other steps were named), its output into $LOG/NAME.log, say how long
  local name=$1; shift
  [ "$ONLY" = "  " ] || [[ $ONLY == *" $name "* ]] || return 0
  local t0=$SECONDS
  echo "$(date -u +%H:%M) $name: $*"
  if ! "$@" > "$LOG/$name.log" 2>&1; then
    echo "  FAILED (see $LOG/$name.log)"
    exit 1
  fi
  echo "  done in $((SECONDS - t0)) s"
}

step recommend $T $L recommend --write  # the recommendation table every --model auto reads
step predictors_duet $T $L bench predictors --dataset $SN --dataset $ORT --dataset $OV --sizes 300,1000,2100,all \
  --seeds 0,1,2 --out benchmarks/predictors_duet
step predictors_b8 $T $L bench predictors --dataset $B8 --sizes 100,300,all --seeds 0,1,2 --out benchmarks/predictors_b8
step predictors_torch $T $L bench predictors --dataset $TORCH --dataset $CG --sizes 100,300,1000,2100,all \
  --seeds 0,1,2 --out benchmarks/predictors_torch
step interactions $T $PY -m benchmarks.interactions $SN $ORT $OV $B8 $TORCH --sizes 100,300,1000,2100 --seeds 0,1,2 \
  --out benchmarks/interactions
step cross_backend $T $PY -m benchmarks.cross_backend --out benchmarks/cross_backend
step transfer $T $L bench transfer --prior-model mlp --out benchmarks/transfer
step transfer_cse $T $L bench transfer --prior-model cse --out benchmarks/transfer_cse
step duet_leak $T $PY -m benchmarks.duet_leak $B8 $ORT $OV $SN
step process_age $T $PY -m benchmarks.process_age $OV $ORT $B8 $SN $TORCH "$LOG/ov_first_duet.parquet"
if [ -n "${OLD_TORCH:-}" ]; then
  git show "$OLD_TORCH":$TORCH > "$LOG/torch_replaced.parquet"
else
  echo "OLD_TORCH not set: torch's label-noise rows are skipped (OLD_TORCH=<commit of the file it replaced>)"
fi
for m in groups cse; do
  step label_noise_ort_$m $T $PY -m benchmarks.label_noise --fit $ORT \
    --other benchmarks/label_noise/onnxruntime_heldout.parquet --model $m
  step label_noise_ov_$m $T $PY -m benchmarks.label_noise --fit $OV --other "$LOG/ov_first_duet.parquet" --model $m
  step label_noise_b8_$m $T $PY -m benchmarks.label_noise --fit $B8 --other "$LOG/b8_first_duet.parquet" --model $m
  if [ -n "${OLD_TORCH:-}" ]; then
    step label_noise_torch_$m $T $PY -m benchmarks.label_noise --fit $TORCH --other "$LOG/torch_replaced.parquet" \
      --model $m
  fi
done
step graph_counts $T $PY -m benchmarks.graph_counts $ORT --out benchmarks/graph_counts
step graph_counts_b8 $T $PY -m benchmarks.graph_counts $B8 --jobs 1 --out benchmarks/graph_counts/batch8
step graph_counts_sn $T $PY -m benchmarks.graph_counts $SN --jobs 1 --out benchmarks/graph_counts/supernet_size
echo "logs in $LOG; now replace the superseded tables in benchmarks/RESULTS.md (and README's figures)"
