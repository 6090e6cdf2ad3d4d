"""Which products of op counts carry the interaction? Greedy forward selection beside the op groups.

Usage: python -m benchmarks.count_terms DATASET [...] --steps 4 [--out FILE.md]

The op groups plus every product of a cell's op counts (``interactions.py``'s "op groups + counts") fit eager
torch far better than the op groups alone. Here, per dataset, the products are added one at a time to the op groups
(ridge), each time the one that lowers the 5-fold cross-validated MAPE on the training rows most; each step prints
the term, that cross-validated MAPE, the MAPE on the held-out rows (the fixed split of ``latkit bench predictors``,
undisturbed rows, never used to choose) and the term's cost in ms per unit.
"""
from __future__ import annotations

import argparse
from itertools import combinations_with_replacement
from pathlib import Path

import numpy as np

from latkit.datasets.store import load
from latkit.errors import LatkitError
from latkit.predictors.fitting import dataset_xy, metrics, split
from latkit.predictors.models import ridge
from latkit.space import PRIMITIVES, op_groups

from benchmarks.common import count_products

ALPHA = 1e-5
FOLDS = 5
OPS = PRIMITIVES[1:]  # the ops a genotype has ('none' is never one)


def term_names() -> list[str]:
    """The names of ``count_products``' columns, in its order."""
    within = [f"{cell}: {a} x {b}" for cell in ("normal", "reduce") for a, b in combinations_with_replacement(OPS, 2)]
    return within + [f"normal {a} x reduce {b}" for a in OPS for b in OPS]


def forward(path: str, steps: int) -> list[tuple[str, float, float, float]]:
    """(term, cross-validated MAPE %, held-out MAPE %, its cost in ms) for each step, after ('op groups alone', ...,
    nan)."""
    x, y, index, clean = dataset_xy(load(path))
    train, test = split(index, clean)
    test &= clean
    groups, products, names = x @ op_groups(), count_products(x), term_names()
    rows = np.flatnonzero(train)
    fold = np.arange(len(rows)) % FOLDS

    def cv_mape(f: np.ndarray) -> float:
        errors = []
        for k in range(FOLDS):
            w, b = ridge(f[rows[fold != k]], y[rows[fold != k]], ALPHA)
            pred = f[rows[fold == k]] @ w + b
            errors.append(np.abs(pred - y[rows[fold == k]]) / y[rows[fold == k]])
        return float(100 * np.concatenate(errors).mean())

    def held_out(f: np.ndarray) -> tuple[float, float]:
        w, b = ridge(f[train], y[train], ALPHA)
        return metrics(y[test], f[test] @ w + b)["mape_pct"], float(w[-1])

    out = [("op groups alone", cv_mape(groups), held_out(groups)[0], float("nan"))]
    chosen: list[int] = []
    for _ in range(steps):
        cv = {k: cv_mape(np.concatenate([groups, products[:, chosen + [k]]], 1))
              for k in range(products.shape[1]) if k not in chosen}
        best = min(cv, key=cv.get)
        chosen.append(best)
        out.append((names[best], cv[best], *held_out(np.concatenate([groups, products[:, chosen]], 1))))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("datasets", nargs="+")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--out", type=Path, help="also write the table here (Markdown)")
    args = p.parse_args()
    lines = ["| dataset | step | term added | cross-validated MAPE % (training rows) | held-out MAPE % | its cost, ms |",
             "|---|---|---|---|---|---|"]
    try:
        for path in args.datasets:
            for k, (term, cv, m, cost) in enumerate(forward(path, args.steps)):
                lines.append(f"| {Path(path).stem} | {k} | {term} | {cv:.3f} | {m:.3f} | "
                             f"{'-' if np.isnan(cost) else f'{cost:+.3f}'} |")
    except LatkitError as e:
        raise SystemExit(f"count_terms: {e}") from None
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
