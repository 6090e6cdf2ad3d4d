"""Does a burn-in remove the low first minutes of a duet campaign's process?

Usage: python -m benchmarks.burn_in --backend openvino --burn-in-s 180 --runs 4 --core 0 --out benchmarks/burn_in

On the ONNX runtimes a campaign's first minutes measure low beside its reference (benchmarks/RESULTS.md, "Clean
data": the drift the duet does not cancel). This runs the same short campaign (sample indices 0..COUNT-1 in index
order, DARTS_V2 beside itself every 5th) ``--runs`` times without a burn-in and as often with ``latkit measure
--burn-in-s``, in pairs (ABBA: which arm runs first alternates), each in a process of its own, each into a file of
its own under ``--out`` (a file that is already complete is not measured again). Both runs of a pair measure the same
architectures in the same order, so the difference of their normalised latencies, by minutes since measuring began,
is the burn-in's effect plus the level each process sets: negative in the first minutes and flat after if the
burn-in removes the low start. The pair is the unit of the summary.
"""
from __future__ import annotations

import argparse
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from latkit.datasets.quality import with_cpu_share
from latkit.datasets.store import load
from latkit.errors import LatkitError

from benchmarks.common import minutes_since_start

BINS_MIN = (0, 1, 2, 3, 4, 6, 8, 10, math.inf)
EARLY_MIN = 3  # minutes of measuring (after any burn-in) compared against the rest


def measure(backend: str, count: int, burn_in_s: float, core: int, out: Path) -> None:
    """One campaign in a process of its own (``latkit measure``); a complete file measures nothing."""
    cmd = [sys.executable, "-m", "latkit", "measure", "--backend", backend, "--count", str(count), "--reference-every",
           "5", "--repeat-every", "0", "--pin-cpu", str(core), "--burn-in-s", f"{burn_in_s:g}", "--out", str(out)]
    print(" ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=True)


def rows(path: Path) -> dict[str, Any]:
    """A run file's undisturbed ok rows: sample index (-1: DARTS_V2 beside itself), normalised min, minutes since
    the run's first row (measuring began: after the process started, checked its reference and burnt in)."""
    ds = load(path)
    if not ds.duet or len(ds.runs) != 1:
        raise LatkitError(f"{path}: expected a duet file of one run (an interrupted run resumed makes two: delete "
                          "the file and measure it again)")
    t = with_cpu_share(ds.table, ds.header["protocol"].get("min_cpu_share"))
    t = t.filter(np.array(t.column("status").to_pylist()) == "ok")
    minutes = minutes_since_start(ds, t)
    return {"index": np.array(t.column("index").to_pylist()), "ms": ds.latency_ms(t, "min_ms"),
            "measuring": minutes - minutes.min(), "burn_in_s": next(iter(ds.runs.values())).get("burn_in_s", 0)}


def _bins(values: np.ndarray, minutes: np.ndarray) -> list[float]:
    """The mean of ``values`` in each of BINS_MIN's bins of ``minutes`` (NaN where empty)."""
    return [float(values[(minutes >= lo) & (minutes < hi)].mean()) if ((minutes >= lo) & (minutes < hi)).any()
            else math.nan for lo, hi in zip(BINS_MIN[:-1], BINS_MIN[1:])]


def paired(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> str:
    """Markdown over (run without a burn-in, run with one) pairs that measured the same architectures in the same
    order: per pair, by minutes since measuring began, the mean over architectures of log(latency without / with)
    in %, and DARTS_V2 beside itself in each run against the pair's timings from minute EARLY_MIN on; then the first
    EARLY_MIN minutes' difference against the rest, per pair and as the mean +- se over pairs (the pair, not the
    architecture, is the unit: each process sets a level of its own)."""
    if not pairs:
        raise LatkitError("need at least one pair of runs, one without a burn-in and one with")
    heads = [f"{lo}-{hi}" if hi < math.inf else f"{lo}+" for lo, hi in zip(BINS_MIN[:-1], BINS_MIN[1:])]
    lines = ["| pair | minutes measuring: | " + " | ".join(heads) + " |", "|---" * (2 + len(heads)) + "|"]
    gaps = []

    def cells(values: list[float]) -> str:
        return " | ".join("-" if math.isnan(v) else f"{v:+.2f}" for v in values)

    for k, (without, with_) in enumerate(pairs, 1):
        a = {int(i): (math.log(y), m) for i, y, m in zip(without["index"], without["ms"], without["measuring"]) if i >= 0}
        b = {int(i): math.log(y) for i, y in zip(with_["index"], with_["ms"]) if i >= 0}
        common = sorted(set(a) & set(b))
        d = np.array([100 * (a[i][0] - b[i]) for i in common])
        minute = np.array([a[i][1] for i in common])
        early = minute < EARLY_MIN
        if not early.any() or early.all():
            raise LatkitError(f"pair {k}: no architectures on one side of minute {EARLY_MIN}")
        gaps.append(float(d[early].mean() - d[~early].mean()))
        lines.append(f"| {k} | architectures, without minus with burn-in, % | {cells(_bins(d, minute))} |")
        ref = [(r["ms"][r["index"] < 0], r["measuring"][r["index"] < 0]) for r in (without, with_)]
        settled = np.exp(np.mean(np.log(np.concatenate([ms[m >= EARLY_MIN] for ms, m in ref]))))
        for (ms, m), name in zip(ref, (f"without ({without['burn_in_s']:g} s)", f"with ({with_['burn_in_s']:g} s)")):
            lines.append(f"| {k} | DARTS_V2 beside itself, {name}, % | {cells(_bins(100 * np.log(ms / settled), m))} |")
    g = np.array(gaps)
    se = f"+- {g.std(ddof=1) / math.sqrt(len(g)):.2f} (se over pairs)" if len(g) > 1 else "(one pair: no se)"
    lines += ["", f"First {EARLY_MIN} minutes measured against later, without minus with burn-in: "
              + ", ".join(f"pair {k} {v:+.2f}" for k, v in enumerate(gaps, 1)) + f"; mean {g.mean():+.2f}% {se}."]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="openvino")
    p.add_argument("--count", type=int, default=150)
    p.add_argument("--burn-in-s", type=float, default=180.0)
    p.add_argument("--runs", type=int, default=2, help="pairs of runs, one without and one with (default 2)")
    p.add_argument("--core", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("benchmarks/burn_in"))
    p.add_argument("--analyse-only", action="store_true", help="measure nothing; report the files under --out")
    args = p.parse_args()
    if not 0 < args.burn_in_s < math.inf:
        raise SystemExit(f"burn_in: --burn-in-s must be a finite number > 0, got {args.burn_in_s}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = {(k, burn): args.out / f"{args.backend}_burn{burn:g}_run{k}.parquet"
            for k in range(1, args.runs + 1) for burn in (0.0, args.burn_in_s)}
    # ABBA: odd pairs run without first, even pairs with first, so neither arm always comes first
    plan = [(k, burn) for k in range(1, args.runs + 1)
            for burn in ((0.0, args.burn_in_s) if k % 2 else (args.burn_in_s, 0.0))]
    try:
        if not args.analyse_only:
            for k, burn in plan:
                measure(args.backend, args.count, burn, args.core, path[k, burn])
        done = [k for k in range(1, args.runs + 1) if path[k, 0.0].exists() and path[k, args.burn_in_s].exists()]
        table = paired([(rows(path[k, 0.0]), rows(path[k, args.burn_in_s])) for k in done])
    except (LatkitError, subprocess.CalledProcessError) as e:
        raise SystemExit(f"burn_in: {e}") from None
    except KeyboardInterrupt:
        raise SystemExit("burn_in: interrupted; delete the run file that was being measured, then run again") from None
    print(table)
    (args.out / f"{args.backend}.md").write_text(table + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
