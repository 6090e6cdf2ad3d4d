#!/usr/bin/env bash
# The duet campaigns of issue 21 that are left, one after the other; each resumes where its file stopped.
# 1. OpenVINO re-measured on core 0 with the other core idle: the test of the 1% DARTS_V2 target (keep core 1 free
#    of campaigns, benchmarks and test runs while it runs).
# 2. Then torch-compile's duet file, grown on core 1.
# SIGINT or SIGTERM to this script stops the one running and starts no other (every finished architecture is in its
# journal; the one in progress is lost).
set -uo pipefail
cd "$(dirname "$0")/../.."
LATKIT=${LATKIT:-.venv/bin/latkit}
P=datasets/partial
# shipped: every CPU dataset (datasets/*.parquet), batch 8's re-measurement since 2026-11-28 04:16 UTC
stopped=0
trap 'stopped=1; kill -TERM $(jobs -p) 2>/dev/null' INT TERM
$LATKIT measure --backend openvino --count 3000 --pin-cpu 0 \
  --out $P/openvino_cpu_b1_r32_c36_l20.parquet >> $P/openvino.log 2>&1 &
wait; wait  # a trapped signal ends the first wait at once: wait again until it has stopped
[ "$stopped" = 1 ] && exit 0
$LATKIT measure --backend torch-compile --count 3000 --repeat-every 5 --pin-cpu 1 \
  --out $P/torch-compile_duet_cpu_b1_r32_c36_l20.parquet >> $P/torch-compile.log 2>&1 &
wait; wait
