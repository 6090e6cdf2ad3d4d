#!/usr/bin/env bash
# The GPU campaign of ../shared/gpu.md as one call on a lent machine (run from the repository root there):
#   bash benchmarks/gpu_campaign.sh SECONDS   # SECONDS: the wall time this call may use in all
# Installs latkit without dependencies, lists the backends, runs the GPU-marked tests and the independent timing
# check (benchmarks/cuda_check.py), then measures torch/cuda at batch 1 (seed 0, default network) into .gpu/,
# resuming the shipped dataset (or the file a previous call on the same warm machine left), until SECONDS are nearly spent.
# $OUT brings back at most 8 files: the checks go into one checks.txt, and only the dataset itself is copied (a
# first run lost 523 H200 samples to a ninth file; the working tree's ignored folders did not outlive the call).
set -u
budget=${1:-540}
t0=$(date +%s)
R=$(pwd)
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --no-build-isolation --target /tmp/site . >/tmp/install.log 2>&1 \
  || { cat /tmp/install.log; exit 1; }
export PYTHONPATH=/tmp/site
mkdir -p /tmp/run "$R/.gpu" && cd /tmp/run || exit 1
L="python3 -m latkit"
if [ ! -e "$R/.gpu/checked" ]; then
  { nvidia-smi 2>&1
    $L backends 2>&1
    timeout 150 python3 -m pytest -q -rs -m gpu -p no:cacheprovider "$R/tests" 2>&1 | tail -25
    timeout 120 python3 "$R/benchmarks/cuda_check.py" --count 5 --json "$OUT/cuda_check.json" 2>&1
  } | tee "$OUT/checks.txt"
  touch "$R/.gpu/checked"
fi
ds="$R/.gpu/torch_cuda_b1_r32_c36_l20.parquet"
[ -e "$ds" ] || cp "$R/datasets/torch_cuda_b1_r32_c36_l20.parquet" "$ds" 2>/dev/null  # resume the shipped file
left=$(( budget - ($(date +%s) - t0) - 25 ))
echo "measuring for ${left} s"
timeout -s INT "$left" $L measure --backend torch --device cuda --count 3000 --out "$ds" >"$OUT/measure.log" 2>&1
tail -5 "$OUT/measure.log"
$L dataset info "$ds" 2>&1 | tee "$OUT/info.txt"
cp "$ds" "$OUT/"
ls -la "$OUT"
