#!/usr/bin/env bash
# The duet re-measurement campaign of issue 21 that is left; it resumes where its file stopped.
set -uo pipefail
cd "$(dirname "$0")/../.."
LATKIT=${LATKIT:-.venv/bin/latkit}
P=datasets/partial
# done and shipped: openvino and onnxruntime at batch 1, the supernet size, batch 8 (datasets/*.parquet)
# torch on both cores: two measuring slots, each pinned to its core with its own DARTS_V2 reference
$LATKIT measure --backend torch --count 3000 --ray local --workers 2 --out $P/torch_cpu_b1_r32_c36_l20.parquet \
  > $P/ray.log 2>&1
