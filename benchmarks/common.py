"""Code the benchmark scripts share (the package ``benchmarks``: run a script as ``python -m benchmarks.NAME``)."""
from __future__ import annotations

import math
from datetime import datetime
from itertools import combinations_with_replacement
from typing import Callable

import numpy as np
import pyarrow as pa

from latkit.datasets.store import Dataset
from latkit.predictors.fitting import metrics
from latkit.predictors.models import ridge
from latkit.space import EDGES_PER_CELL, NODES, PRIMITIVES, edge_index

OPS = len(PRIMITIVES)  # index 0 is 'none'
PAIRS = list(combinations_with_replacement(range(1, OPS), 2))
ALPHAS = (1e-5, 1e-4, 1e-3, 1e-2)


def count_products(x: np.ndarray) -> np.ndarray:
    """Per cell, products of op counts for every pair of op types, and across the two cells."""
    counts = x.reshape(len(x), 2, EDGES_PER_CELL, OPS)[:, :, :, 1:].sum(2)  # (n, cell, op)
    within = [counts[:, c, i] * counts[:, c, j] for c in range(2)
              for i, j in combinations_with_replacement(range(OPS - 1), 2)]
    across = [counts[:, 0, i] * counts[:, 1, j] for i in range(OPS - 1) for j in range(OPS - 1)]
    return np.stack(within + across, axis=1)


def node_pairs(x: np.ndarray) -> np.ndarray:
    """Per cell and node, a one-hot of the unordered pair of ops on its two kept input edges."""
    e = x.reshape(len(x), 2, EDGES_PER_CELL, OPS)
    pair_id = {p: k for k, p in enumerate(PAIRS)}
    out = np.zeros((len(x), 2, NODES, len(PAIRS)), dtype=np.float32)
    for c in range(2):
        for node in range(NODES):
            edges = e[:, c, edge_index(node, 0): edge_index(node, 0) + node + 2]  # (n, inputs, op)
            ops = np.where(edges[:, :, 0] == 0, edges.argmax(-1), OPS)  # OPS marks an edge not kept
            ops = np.sort(ops, axis=1)[:, :2]
            for row, (a, b) in enumerate(ops):
                out[row, c, node, pair_id[(int(a), int(b))]] = 1.0
    return out.reshape(len(x), -1)


def mape_pct(y: np.ndarray, predicted: np.ndarray) -> float:
    return metrics(y, predicted)["mape_pct"]


def ridge_cv(f: np.ndarray, y: np.ndarray, alphas: tuple[float, ...] = ALPHAS,
             error: Callable[[np.ndarray, np.ndarray], float] = mape_pct) -> tuple[np.ndarray, float]:
    """Ridge (w, b) with the penalty (of ``alphas``) whose ``error`` is least on every fourth training row, refitted
    on all rows."""
    val = np.zeros(len(f), dtype=bool)
    val[::4] = True

    def held(alpha: float) -> float:
        w, b = ridge(f[~val], y[~val], alpha)
        return error(y[val], f[val] @ w + b)

    return ridge(f, y, min(alphas, key=held))


def minutes_since_start(ds: Dataset, table: pa.Table) -> np.ndarray:
    """Minutes from each row of ``table`` (rows of ``ds``) to its run's start (NaN where no start is recorded)."""
    started = {r: datetime.fromisoformat(v["started"]).timestamp() for r, v in ds.runs.items() if "started" in v}
    return np.array([(datetime.fromisoformat(t).timestamp() - started[r]) / 60 if r in started else math.nan
                     for t, r in zip(table.column("timestamp").to_pylist(), table.column("run_id").to_pylist())])
