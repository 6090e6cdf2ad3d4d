#!/usr/bin/env bash
# The duet campaigns of issue 21 that are left, one after the other; each resumes where its file stopped.
# 1. torch re-measured on core 0 with the other core idle, as OpenVINO's was (keep core 1 free of campaigns,
#    benchmarks and test runs while it runs).
# 2. Then torch-compile's duet file, grown on core 1, only if step 1 finished cleanly.
# SIGINT or SIGTERM to this script stops the one running and starts no other (every finished architecture is in its
# journal; the one in progress is lost). Exit status: 0 when both ran to the end, 143 when stopped by a signal, else
# the failing campaign's own status.
set -uo pipefail
cd "$(dirname "$0")/../.."
LATKIT=${LATKIT:-.venv/bin/latkit}
P=datasets/partial
# shipped: every CPU dataset (datasets/*.parquet); batch 8's re-measurement since 2026-11-28 04:16 UTC, OpenVINO's
# calm one since 07:07 UTC
stopped=0
pid=
trap 'stopped=1; [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null' INT TERM

run() {  # run "$@" in the background, wait until it has exited (a trapped signal ends a wait early), return its status
  "$@" & pid=$!
  [ "$stopped" = 1 ] && kill -TERM "$pid" 2>/dev/null  # a signal that came before $pid was set
  local rc
  wait "$pid"; rc=$?
  while kill -0 "$pid" 2>/dev/null; do wait "$pid"; rc=$?; done  # a zombie passes kill -0 until it is waited for
  pid=
  return "$rc"
}

run $LATKIT measure --backend torch --count 3000 --pin-cpu 0 \
  --out $P/torch_cpu_b1_r32_c36_l20.parquet >> $P/torch.log 2>&1
rc=$?
[ "$stopped" = 1 ] && exit 143
[ "$rc" = 0 ] || { echo "torch campaign exited with $rc (see $P/torch.log); torch-compile not started" >&2; exit "$rc"; }
run $LATKIT measure --backend torch-compile --count 3000 --repeat-every 5 --pin-cpu 1 \
  --out $P/torch-compile_duet_cpu_b1_r32_c36_l20.parquet >> $P/torch-compile.log 2>&1
rc=$?
[ "$stopped" = 1 ] && exit 143
exit "$rc"
