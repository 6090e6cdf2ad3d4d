#!/usr/bin/env bash
# The duet campaign of issue 21 that is left: torch-compile's duet file, grown on core 1 (torch's calm re-measurement
# shipped 2026-11-28 12:42 UTC). It resumes where its file stopped.
# SIGINT or SIGTERM to this script stops it (every finished architecture is in its journal; the one in progress is
# lost). Exit status: 0 when it ran to the end, 143 when stopped by a signal, else the campaign's own status.
set -uo pipefail
cd "$(dirname "$0")/../.."
LATKIT=${LATKIT:-.venv/bin/latkit}
P=datasets/partial
stopped=0
pid=
trap 'stopped=1; [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null' INT TERM

$LATKIT measure --backend torch-compile --count 3000 --repeat-every 5 --pin-cpu 1 \
  --out $P/torch-compile_duet_cpu_b1_r32_c36_l20.parquet >> $P/torch-compile.log 2>&1 &
pid=$!
[ "$stopped" = 1 ] && kill -TERM "$pid" 2>/dev/null  # a signal that came before $pid was set
wait "$pid"; rc=$?
while kill -0 "$pid" 2>/dev/null; do wait "$pid"; rc=$?; done  # a trapped signal ends a wait early
[ "$stopped" = 1 ] && exit 143
exit "$rc"
