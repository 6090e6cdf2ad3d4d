#!/usr/bin/env bash
# The duet campaigns of issue 21 that are left, one per core; each resumes where its file stopped.
# SIGINT or SIGTERM to this script stops both (each keeps every finished architecture in its journal; the one in
# progress is lost).
set -uo pipefail
cd "$(dirname "$0")/../.."
LATKIT=${LATKIT:-.venv/bin/latkit}
P=datasets/partial
# shipped: every CPU dataset (datasets/*.parquet); batch 8 again on a quieter core, torch-compile's duet file
trap 'kill -TERM $(jobs -p) 2>/dev/null' INT TERM
$LATKIT measure --backend onnxruntime --batch 8 --count 500 --pin-cpu 0 \
  --out $P/onnxruntime_cpu_b8_r32_c36_l20.parquet > $P/onnxruntime_b8.log 2>&1 &
$LATKIT measure --backend torch-compile --count 3000 --repeat-every 5 --pin-cpu 1 \
  --out $P/torch-compile_duet_cpu_b1_r32_c36_l20.parquet > $P/torch-compile.log 2>&1 &
wait
wait  # a trapped signal ends the first wait at once: wait again until both have stopped
