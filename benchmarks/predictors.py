"""The predictor benchmark (issue 4), and the MLP's hyper-parameter choice.

Usage:
  python -m benchmarks.predictors --tune DATASET     # MLP grid scored on a validation split of the training rows
  python -m benchmarks.predictors [DATASET ...] --out benchmarks/predictors   # = latkit bench predictors
The tuning never sees the held-out test rows (sample index % 5 == 4) that the benchmark reports on.
"""
from __future__ import annotations

import argparse
import itertools
import time

import numpy as np

from latkit.cli import main as cli_main
from latkit.datasets.store import load
from latkit.predictors import make_predictor, metrics
from latkit.predictors.fitting import DEFAULT_STAT, dataset_xy, split


def tune(path: str) -> None:
    x, y, index, clean = dataset_xy(load(path), DEFAULT_STAT)
    train, _ = split(index, clean)
    x, y, index = x[train], y[train], index[train]
    val = index % 4 == 3  # a quarter of the training rows, disjoint from the test split
    print(f"{path}: {int((~val).sum())} fitting rows, {int(val.sum())} validation rows ({DEFAULT_STAT})\n")
    print("| skip | log target | width | depth | val MAPE % | within 10% | epochs | fit s |\n|---|---|---|---|---|---|---|---|")
    for (skip, log_target), width, depth in itertools.product([(True, True), (True, False), (False, True)],
                                                             [128, 512], [2, 3]):
        p = make_predictor("mlp", skip=skip, log_target=log_target, width=width, depth=depth)
        t0 = time.perf_counter()
        report = p.fit(x[~val], y[~val])
        m = metrics(y[val], p.predict_ms(x[val]))
        print(f"| {skip} | {log_target} | {width} | {depth} | {m['mape_pct']:.2f} | {m['within10_pct']:.1f}% | "
              f"{report['best_epoch']}/{report['epochs']} | {time.perf_counter() - t0:.0f} |", flush=True)
    add = make_predictor("additive")
    add.fit(x[~val], y[~val])
    print(f"\nadditive on the same split: val MAPE {metrics(y[val], add.predict_ms(x[val]))['mape_pct']:.2f}%")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*")
    parser.add_argument("--tune", action="store_true")
    parser.add_argument("--out")
    args, rest = parser.parse_known_args()
    if args.tune:
        for d in args.datasets:
            tune(d)
    else:
        argv = ["bench", "predictors", *[a for d in args.datasets for a in ("--dataset", d)], *rest]
        raise SystemExit(cli_main(argv + (["--out", args.out] if args.out else [])))
