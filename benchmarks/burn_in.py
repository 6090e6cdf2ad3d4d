"""Does a burn-in remove the low first minutes of a duet campaign's process?

Usage: python benchmarks/burn_in.py --backend openvino --burn-in-s 180 --runs 2 --core 0 --out benchmarks/burn_in

On the ONNX runtimes a campaign's first minutes measure low beside its reference (benchmarks/RESULTS.md, "Clean
data": the drift the duet does not cancel). This runs the same short campaign (sample indices 0..COUNT-1 in index
order, DARTS_V2 beside itself every 5th) ``--runs`` times without a burn-in and as often with ``latkit measure
--burn-in-s``, alternating, each in a process of its own, each into a file of its own under ``--out`` (a file that is
already complete is not measured again). The same architectures in the same order in both arms, so the difference
of their normalised latencies between the arms, by minutes since measuring began, is the burn-in's effect: about
-0.9% in the first minutes if it removes the low start, and 0 after.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from process_age import minutes_since_start  # noqa: E402

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
    the process started."""
    ds = load(path)
    if not ds.duet or len(ds.runs) != 1:
        raise LatkitError(f"{path}: expected a duet file of one run")
    t = with_cpu_share(ds.table, ds.header["protocol"].get("min_cpu_share"))
    t = t.filter(np.array(t.column("status").to_pylist()) == "ok")
    return {"index": np.array(t.column("index").to_pylist()), "ms": ds.latency_ms(t, "min_ms"),
            "minutes": minutes_since_start(ds, t), "burn_in_s": next(iter(ds.runs.values())).get("burn_in_s", 0)}


def paired(runs: list[dict[str, Any]], burn_in_s: float) -> str:
    """Markdown: by minutes since measuring began (the process's start, plus any burn-in), the mean over
    architectures of log(latency without a burn-in / with one), each side the mean over its runs; and DARTS_V2 beside
    itself per arm, against both arms' timings from minute EARLY_MIN on."""
    arms = {0.0: [r for r in runs if not r["burn_in_s"]], burn_in_s: [r for r in runs if r["burn_in_s"]]}
    if not all(arms.values()):
        raise LatkitError("need at least one run of each arm")
    for r in runs:
        r["measuring"] = r["minutes"] - r["burn_in_s"] / 60

    def by_index(arm: list[dict[str, Any]]) -> dict[int, tuple[float, float]]:
        """index -> (mean log latency, mean minutes measuring) over the arm's runs."""
        acc: dict[int, list[tuple[float, float]]] = {}
        for r in arm:
            for i, y, m in zip(r["index"], r["ms"], r["measuring"]):
                if i >= 0:
                    acc.setdefault(int(i), []).append((math.log(y), m))
        return {i: (float(np.mean([v[0] for v in vs])), float(np.mean([v[1] for v in vs]))) for i, vs in acc.items()}

    without, with_ = by_index(arms[0.0]), by_index(arms[burn_in_s])
    common = sorted(set(without) & set(with_))
    d = np.array([100 * (without[i][0] - with_[i][0]) for i in common])
    minute = np.array([without[i][1] for i in common])
    ref = {b: np.concatenate([r["ms"][r["index"] < 0] for r in arm]) for b, arm in arms.items()}
    ref_min = {b: np.concatenate([r["measuring"][r["index"] < 0] for r in arm]) for b, arm in arms.items()}
    settled = np.exp(np.mean(np.log(np.concatenate([ref[b][ref_min[b] >= EARLY_MIN] for b in arms]))))
    heads = [f"{lo}-{hi}" if hi < math.inf else f"{lo}+" for lo, hi in zip(BINS_MIN[:-1], BINS_MIN[1:])]
    lines = ["| minutes measuring | " + " | ".join(heads) + " |", "|---" * (1 + len(heads)) + "|"]

    def cell(v: np.ndarray) -> str:
        if not len(v):
            return "-"
        se = f"{v.std(ddof=1) / math.sqrt(len(v)):.2f}; " if len(v) > 1 else ""
        return f"{v.mean():+.2f} ({se}{len(v)})"

    bins = list(zip(BINS_MIN[:-1], BINS_MIN[1:]))
    lines.append("| architectures, without minus with burn-in, % (se; n) | "
                 + " | ".join(cell(d[(minute >= lo) & (minute < hi)]) for lo, hi in bins) + " |")
    for b in arms:
        off = 100 * np.log(ref[b] / settled)
        lines.append(f"| DARTS_V2 beside itself, burn-in {b:g} s, % | "
                     + " | ".join(cell(off[(ref_min[b] >= lo) & (ref_min[b] < hi)]) for lo, hi in bins) + " |")
    early = minute < EARLY_MIN
    gap = d[early].mean() - d[~early].mean()
    se = math.sqrt(d[early].var(ddof=1) / early.sum() + d[~early].var(ddof=1) / (~early).sum())
    lines += ["", f"First {EARLY_MIN} minutes measured against later: without minus with burn-in {gap:+.2f}% "
              f"(se {se:.2f}; {early.sum()} and {(~early).sum()} architectures; {len(arms[0.0])} and "
              f"{len(arms[burn_in_s])} runs)."]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="openvino")
    p.add_argument("--count", type=int, default=150)
    p.add_argument("--burn-in-s", type=float, default=180.0)
    p.add_argument("--runs", type=int, default=2, help="runs per arm, alternating (default 2)")
    p.add_argument("--core", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("benchmarks/burn_in"))
    p.add_argument("--analyse-only", action="store_true", help="measure nothing; report the files under --out")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    plan = [(k, burn) for k in range(1, args.runs + 1) for burn in (0.0, args.burn_in_s)]
    paths = [args.out / f"{args.backend}_burn{burn:g}_run{k}.parquet" for k, burn in plan]
    try:
        if not args.analyse_only:
            for (k, burn), path in zip(plan, paths):
                measure(args.backend, args.count, burn, args.core, path)
        present = [path for path in paths if path.exists()]
        table = paired([rows(path) for path in present], args.burn_in_s)
    except (LatkitError, subprocess.CalledProcessError) as e:
        raise SystemExit(f"burn_in: {e}") from None
    print(table)
    (args.out / f"{args.backend}.md").write_text(table + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
