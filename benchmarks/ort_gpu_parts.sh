#!/usr/bin/env bash
# Here (not on the GPU machine): onnxruntime-gpu 1.31.1 for the lent machine's Python 3.12 and CUDA 13, packed into
# parts that each fit one device call beside the working tree (../shared/gpu.md). Writes .ortgpu/part.* (ignored)
# and prints each part's size against the 64 MiB a call may carry.
set -euo pipefail
cd "$(dirname "$0")/.."
W=$(mktemp -d)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 -d "$W" onnxruntime-gpu==1.31.1
mkdir -p "$W/site" && (cd "$W/site" && python3 -m zipfile -e "$W"/onnxruntime_gpu-*.whl .)
tar -C "$W/site" -cJf "$W/ortgpu.tar.xz" .
rm -rf .ortgpu && mkdir .ortgpu
split -b 49M -d "$W/ortgpu.tar.xz" .ortgpu/part.  # 4 parts of at most 49 MiB: with `bash benchmarks/gpu_lite_tree.sh on` (about 3 MiB travels)
rm -rf "$W"
tree_mib=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
tree_mib=$(( tree_mib / 1048576 ))
for p in .ortgpu/part.*; do
  part_mib=$(( $(stat -c %s "$p") / 1048576 ))
  echo "$p: ${part_mib} MiB + working tree ${tree_mib} MiB = $(( part_mib + tree_mib )) MiB (limit 64)"
done
