#!/usr/bin/env bash
# The duet campaign of issue 21 that is left: torch-compile's duet file, on core 1; it resumes where its file stopped.
# SIGINT or SIGTERM to this script stops it (it keeps every finished architecture in its journal; the one in
# progress is lost).
set -uo pipefail
cd "$(dirname "$0")/../.."
LATKIT=${LATKIT:-.venv/bin/latkit}
P=datasets/partial
# shipped: every CPU dataset (datasets/*.parquet), batch 8's re-measurement since 2026-11-28 04:16 UTC
trap 'kill -TERM $(jobs -p) 2>/dev/null' INT TERM
$LATKIT measure --backend torch-compile --count 3000 --repeat-every 5 --pin-cpu 1 \
  --out $P/torch-compile_duet_cpu_b1_r32_c36_l20.parquet > $P/torch-compile.log 2>&1 &
wait
wait  # a trapped signal ends the first wait at once: wait again until it has stopped
