#!/usr/bin/env bash
# The GPU campaign of ../shared/gpu.md, one mode per device call (run from the repository root there):
#   bash benchmarks/gpu_campaign.sh graphs SECONDS  # call 1: install, checks, then torch/cuda with CUDA graphs
#   bash benchmarks/gpu_campaign.sh part            # calls 2..n: carry .ortgpu/part.NN (one per call), keep it
#   bash benchmarks/gpu_campaign.sh ort SECONDS     # last part's call: join, install onnxruntime-gpu, its tests,
#                                                   # then onnxruntime/cuda with cuda_graph for the time left
#   bash benchmarks/gpu_campaign.sh eager SECONDS   # time left: eager torch/cuda, resuming the shipped file (solo)
# Every mode first keeps the part its call carries (call 1 carries part.00 too).
# Here, before and after the calls: `bash benchmarks/gpu_lite_tree.sh on|off` (the parts need the small tree).
# SECONDS: the wall time the call may use in all. The machine keeps /tmp between calls while it stays warm (30 s).
# Every dataset is measured with the campaign protocol (the duet: DARTS_V2 beside each architecture, on its stream).
# $OUT brings back at most 8 files: checks go into one checks.txt; each dataset is copied there at the end.
set -u
mode=${1:?graphs, part, ort or eager}
budget=${2:-540}
t0=$(date +%s)
R=$(pwd)
export PYTHONUNBUFFERED=1
if [ ! -e /tmp/site/latkit ]; then
  python3 -m pip install -q --no-deps --no-build-isolation --target /tmp/site . >/tmp/install.log 2>&1 \
    || { cat /tmp/install.log; exit 1; }
fi
export PYTHONPATH=/tmp/ortsite:/tmp/site
mkdir -p /tmp/run /tmp/gpu && cd /tmp/run || exit 1
L="python3 -m latkit"
left() { echo $(( budget - ($(date +%s) - t0) - 25 )); }

measure() {  # measure FILE ARGS...: the campaign for the time left, then the file and its summary into $OUT
  local ds=$1; shift
  [ "$(left)" -ge 30 ] || { echo "no time left to measure $(basename "$ds")"; return; }
  echo "measuring $(basename "$ds") for $(left) s"
  timeout -s INT "$(left)" $L measure --count 3000 --out "$ds" "$@" >"$OUT/measure_$(basename "$ds" .parquet).log" 2>&1
  tail -3 "$OUT/measure_$(basename "$ds" .parquet).log"
  $L dataset info "$ds" --stat min_ms 2>&1 | tee "$OUT/info_$(basename "$ds" .parquet).txt"
  cp "$ds" "$OUT/"
}

if ls "$R"/.ortgpu/part.* >/dev/null 2>&1; then
  mkdir -p /tmp/ortparts && cp "$R"/.ortgpu/part.* /tmp/ortparts/ && ls -la /tmp/ortparts
fi

case $mode in
  graphs)
    { nvidia-smi 2>&1
      $L backends 2>&1
      timeout 150 python3 -m pytest -q -rs -m gpu -p no:cacheprovider "$R/tests" 2>&1 | tail -25
      timeout 120 python3 "$R/benchmarks/cuda_check.py" --count 3 --json "$OUT/cuda_check.json" 2>&1
      timeout 120 python3 "$R/benchmarks/cuda_graphs.py" --count 12 --json "$OUT/cuda_graphs.json" 2>&1 | tail -3
    } | tee "$OUT/checks.txt"
    # resume the shipped file where this machine may (same GPU, driver, CUDA, torch...), else a new file named by GPU
    ds=$(python3 "$R/benchmarks/gpu_resume.py" "$R/datasets/torch_cuda_graph_b1_r32_c36_l20.parquet" \
      /tmp/gpu/torch_cuda_graph_b1_r32_c36_l20.parquet)
    measure "$ds" --backend torch --device cuda -O cuda_graph=true
    ;;
  part|ort)
    [ "$mode" = part ] && exit 0
    rm -rf /tmp/ortsite && mkdir -p /tmp/ortsite
    cat /tmp/ortparts/part.* | tar -C /tmp/ortsite -xJf - || { echo "the parts do not join: $(ls /tmp/ortparts)"; exit 1; }
    python3 -c "import onnxruntime as o; o.preload_dlls(); print(o.__version__, o.get_available_providers())" 2>&1 \
      | tee "$OUT/checks.txt"
    timeout 120 python3 -m pytest -q -rs -m gpu -k "onnxruntime or cuda_runners" -p no:cacheprovider "$R/tests" 2>&1 \
      | tail -15 | tee -a "$OUT/checks.txt"
    # 2026-11-28 (H200): with the default cudnn_conv_algo_search=EXHAUSTIVE each architecture's warm-up took a
    # median 8.3 s (prepare 0.15 s; cuDNN tries every algorithm on a convolution's first run) and the campaign ran
    # at 0.09 architectures/s (datasets/onnxruntime_cuda_graph_b1_r32_c36_l20.parquet, 31 rows).
    # Next: HEURISTIC, into its own file (a different option is a different identity).
    measure /tmp/gpu/onnxruntime_cuda_graph_heuristic_b1_r32_c36_l20.parquet --backend onnxruntime --device cuda \
      -O cuda_graph=true -O cudnn_conv_algo_search=HEURISTIC
    ;;
  eager)
    ds=/tmp/gpu/torch_cuda_b1_r32_c36_l20.parquet
    [ -e "$ds" ] || cp "$R/datasets/torch_cuda_b1_r32_c36_l20.parquet" "$ds"
    measure "$ds" --backend torch --device cuda --solo --force  # the shipped file's protocol; its fingerprint kept live clocks
    ;;
  *) echo "unknown mode $mode (graphs, part, ort or eager)"; exit 2 ;;
esac
ls -la "$OUT"
