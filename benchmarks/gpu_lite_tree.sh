#!/usr/bin/env bash
# Here, around the device calls of the GPU campaign (../shared/gpu.md): what travels with a call is the working tree
# (tracked and untracked-not-ignored files) plus the carried paths, at most 64 MiB. The device needs only the code,
# so `on` takes the data files (shipped datasets but the GPU ones, which a call may resume; benchmark outputs;
# XGBoost models) out of the index and ignores them in .git/info/exclude: what travels drops from about 28 MB to
# about 3 MB, and one
# onnxruntime-gpu part of 49 MiB fits each call (4 calls, not 6). `off` puts back exactly those index entries and the
# exclude file. Files on disk are never touched. Do not commit between `on` and `off`: the commit would delete the
# data files. Used 2026-11-28: 2.8 MB travelled beside each part.
set -euo pipefail
cd "$(dirname "$0")/.."
X=.git/info/exclude
LIST=.git/latkit-lite.txt
case ${1:?on or off} in
  on)
    [ -e "$LIST" ] && { echo "already on (run off first)"; exit 1; }
    mkdir -p .git/info && touch "$X" && cp "$X" "$X.latkit-lite"
    git ls-files | grep -E '\.ubj$|^benchmarks/.*\.(json|png|parquet|csv|txt)$|^datasets/.*\.parquet$|^benchmarks/RESULTS.md$' \
      | grep -v '_cuda_' >"$LIST"
    git rm -q --cached --pathspec-from-file="$LIST"
    sed 's/^/\//' "$LIST" >>"$X"
    echo "travels: $(( $(git ls-files -co --exclude-standard -z | xargs -0 du -cb | tail -1 | cut -f1) / 1000000 )) MB"
    ;;
  off)
    [ -e "$LIST" ] || { echo "not on"; exit 1; }
    git reset -q --pathspec-from-file="$LIST"
    mv "$X.latkit-lite" "$X"
    rm "$LIST"
    git status --short | head
    ;;
  *) echo "on or off"; exit 2 ;;
esac
