"""How close a few duet windows of the reference come to a dataset's baseline (what ``latkit.calibrate`` relies on).

Usage: python -m benchmarks.calibration_windows DATASET [--windows 5] [--stat min_ms]

The baseline is the 10th percentile of the reference's statistic over every ok window of a duet dataset. Calibration
times the reference in a few consecutive windows; this splits the dataset's own windows, in order, into runs of
``--windows`` and prints, over the runs, the median and the 10th-90th percentiles of the fastest window of a run and
of the run's median, each divided by the baseline (1.0: calibration on the dataset's host at the dataset's time
would scale by nothing).
"""
from __future__ import annotations

import argparse

import numpy as np

from latkit.datasets.store import load


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset")
    p.add_argument("--windows", type=int, default=5)
    p.add_argument("--stat", default="min_ms")
    args = p.parse_args()
    ds = load(args.dataset)
    t = ds.table.to_pydict()
    ref = np.array([v for v, s in zip(t[f"ref_{args.stat}"], t["status"]) if s == "ok" and v is not None])
    base, k = ds.baseline_ms(args.stat), args.windows
    runs = [ref[i:i + k] for i in range(0, len(ref) - k + 1, k)]
    for name, f in (("fastest window", np.min), ("median window", np.median)):
        r = np.array([f(run) for run in runs]) / base
        print(f"{name} of {k} / baseline over {len(runs)} runs: median {np.median(r):.4f}, "
              f"p10 {np.percentile(r, 10):.4f}, p90 {np.percentile(r, 90):.4f}")


if __name__ == "__main__":
    main()
