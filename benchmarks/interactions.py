"""Is latency additive in the ops? The per-op table against models that can see interactions (issue 21).

Usage: python -m benchmarks.interactions DATASET [...] [--sizes 300,1000,2400] [--seeds 0,1,2] [--out DIR]

On the fixed held-out split of `latkit bench predictors` (normalised latencies of a duet file), for each training
size and fit seed (the seed draws the training subset and the fit's own randomness):
- table: latkit's additive predictor, one cost per (cell, edge, op);
- op groups: 28 costs only, one per (cell type, op, reads a cell input or an intermediate node), the transfer fits'
  encoding: fewer terms to learn from few rows, no per-edge position;
- mlp: latkit's MLP (the paper's LPM), which can model any interaction but must find it from the rows;
- xgboost: latkit's XGBoost baseline;
- op groups + counts, table + counts: the op groups or the table plus, per cell, the products of its op counts
  (every pair of op types, within the normal cell, within the reduction cell, and across the two): what one op
  costs may depend on how many of the others the cell holds (cache footprint, a runtime's fusions);
- op groups + counts + boosted residual: gradient-boosted trees (XGBoost, depth 3) fitted to what the op groups plus
  counts leave, over the 28 op-group counts: any further interaction that trees can find;
- table + node pairs: the table plus, per cell and node, which unordered pair of ops feeds that node (the two
  inputs that are summed: a runtime can fuse them, or their buffers compete);
- cse: latkit's predictor of that name, the op groups plus the ops a graph runtime's common-subexpression
  elimination merges (``space.merged_ops``: two pools of one kind on one tensor are one pool, the ReLUs that open
  several convs on one tensor are one ReLU), with its fixed ridge penalty; op groups + merged ops, the same terms
  with the penalty chosen like the other ridge fits'; and op groups + counts + merged ops, both extensions.
The op-group and extended models are ridge fits whose penalty is chosen on a quarter of the training rows, then
refitted on all of them. Held-out MAPE is against single measurements, so even the true latency would score about
the dataset's single-measurement noise (given beside: undisturbed pairs).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from latkit.datasets.quality import noise_floor
from latkit.datasets.store import load
from latkit.predictors.fitting import DEFAULT_STAT, dataset_xy, metrics, split, training_subset
from latkit.predictors import make_predictor
from latkit.space import merged_ops, op_groups

from benchmarks.common import count_products, node_pairs, ridge_cv

def boosted_residual(f: np.ndarray, groups: np.ndarray, y: np.ndarray, test: np.ndarray, seed: int) -> np.ndarray:
    """Ridge on ``f`` (rows ``~test`` train), then XGBoost on its residual over the op-group counts ``groups``."""
    import xgboost

    w, b = ridge_cv(f[~test], y[~test])
    trees = xgboost.XGBRegressor(n_estimators=400, max_depth=3, learning_rate=0.05, subsample=0.8, n_jobs=1,
                                 random_state=seed)
    trees.fit(groups[~test], y[~test] - (f[~test] @ w + b))
    return f[test] @ w + b + trees.predict(groups[test])


def run(path: str, sizes: list[int], seeds: list[int]) -> list[dict]:
    """One row per (model, training size, fit seed) on the dataset's fixed held-out split (undisturbed rows)."""
    ds = load(path)
    x, y, index, clean = dataset_xy(ds, DEFAULT_STAT)
    train, test = split(index, clean)
    test &= clean
    floor = noise_floor(ds, DEFAULT_STAT, ds.header.get("protocol", {}).get("min_cpu_share"))
    groups = x @ op_groups()
    features = {"op groups": groups, "op groups + counts": np.concatenate([groups, count_products(x)], 1),
                "table + counts": np.concatenate([x, count_products(x)], 1),
                "table + node pairs": np.concatenate([x, node_pairs(x)], 1),
                "op groups + merged ops": np.concatenate([groups, merged_ops(x)], 1),
                "op groups + counts + merged ops": np.concatenate([groups, count_products(x), merged_ops(x)], 1)}
    rows, rows_train = [], np.flatnonzero(train)
    for size in sizes:
        if size > len(rows_train):
            print(f"{Path(path).name}: size {size} skipped, {len(rows_train)} training rows")
            continue
        for seed in seeds:
            pick = rows_train[training_subset(len(rows_train), size, seed)]
            predictions = {}
            for kind, name in (("additive", "table"), ("mlp", "mlp"), ("xgboost", "xgboost"), ("cse", "cse")):
                p = make_predictor(kind)
                p.fit(x[pick], y[pick], seed)
                predictions[name] = p.predict_ms(x[test])
            for name, f in features.items():
                w, b = ridge_cv(f[pick], y[pick])
                predictions[name] = f[test] @ w + b
            rows_in = np.concatenate([pick, np.flatnonzero(test)])
            is_test = np.arange(len(rows_in)) >= len(pick)
            predictions["op groups + counts + boosted residual"] = boosted_residual(
                features["op groups + counts"][rows_in], groups[rows_in], y[rows_in], is_test, seed)
            for name, pred in predictions.items():
                m = metrics(y[test], pred)
                rows.append({"dataset": Path(path).name, "model": name, "train_size": int(size), "seed": seed,
                             "mape_pct": m["mape_pct"], "kendall": m["kendall"], "test_rows": int(test.sum()),
                             "noise_single_pct": floor["single_mape_pct"], "noise_pairs": floor["pairs"]})
            print(f"{Path(path).name} n={size} seed {seed}: " + ", ".join(
                f"{r['model']} {r['mape_pct']:.2f}%" for r in rows[-len(predictions):]), flush=True)
    return rows


def markdown(rows: list[dict]) -> str:
    """Mean +- std over fit seeds of each model's held-out MAPE, per dataset and training size."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    out = ["| dataset | training rows | " + " | ".join(f"{m} MAPE %" for m in models) + " | noise % (pairs) |",
           "|---|---|" + "---|" * len(models) + "---|"]
    for ds, size in dict.fromkeys((r["dataset"], r["train_size"]) for r in rows):
        mine = [r for r in rows if (r["dataset"], r["train_size"]) == (ds, size)]
        cells = []
        for m in models:
            v = np.array([r["mape_pct"] for r in mine if r["model"] == m])
            cells.append(f"{v.mean():.2f} +- {v.std():.2f}")
        out.append(f"| {Path(ds).stem} | {size} | " + " | ".join(cells) +
                   f" | {mine[0]['noise_single_pct']:.2f} ({mine[0]['noise_pairs']}) |")
    return "\n".join(out) + "\n"


def main() -> None:
    """Run every dataset, print the table, and write it (with the rows as JSON) under --out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+")
    parser.add_argument("--sizes", default="300,1000,2400")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out")
    args = parser.parse_args()
    sizes, seeds = [int(s) for s in args.sizes.split(",")], [int(s) for s in args.seeds.split(",")]
    rows = [r for d in args.datasets for r in run(d, sizes, seeds)]
    table = markdown(rows)
    print("\nmean +- std over fit seeds " + ",".join(map(str, seeds)) + "\n\n" + table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "interactions.md").write_text(table)
        (out / "interactions.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
