#!/usr/bin/env bash
# The duet re-measurement campaigns of issue 21, one queue per core; each resumes where its file stopped.
set -uo pipefail
cd "$(dirname "$0")/../.."
LATKIT=${LATKIT:-.venv/bin/latkit}
P=datasets/partial
# done and shipped: openvino and onnxruntime at batch 1 (datasets/*.parquet)
$LATKIT measure --backend torch --count 3000 --pin-cpu 1 --out $P/torch_cpu_b1_r32_c36_l20.parquet > $P/core1.log 2>&1 &
$LATKIT measure --backend onnxruntime --batch 8 --count 500 --pin-cpu 0 --out $P/onnxruntime_cpu_b8_r32_c36_l20.parquet \
  > $P/core0.log 2>&1 &
wait
