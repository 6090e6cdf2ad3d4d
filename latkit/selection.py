"""Which architectures to measure when only a few can be: ``latkit measure --count N --select random|diverse``.

``diverse`` is a greedy D-optimal design over the features a transfer fit learns from (the 28 op-group counts of
``latkit.space.op_groups`` and a constant): each next architecture is the candidate with the largest
leverage ``f' (F'F + I)^-1 f`` given those chosen so far, i.e. the one the current design knows least about. Both
methods draw from the first ``pool`` architectures of the sampling campaign and depend only on (seed, count, pool).
"""
from __future__ import annotations

import numpy as np

from latkit.errors import LatkitError
from latkit.space import encode_many, op_groups, sample

METHODS = ("first", "random", "diverse")
# The most candidates each method draws from. 'diverse' samples every candidate's genotype (~0.5 ms each) and scores
# all of them for each pick: 100 000 is about a minute of sampling and tens of MB, 10x the default pool of a
# 5 000-architecture design; 'random' draws a permutation (8 bytes a candidate).
MAX_POOL = {"random": 10**7, "diverse": 100_000}


def select_indices(seed: int, count: int, method: str = "first", pool: int | None = None) -> list[int]:
    """``count`` sample indices of campaign ``seed`` chosen by ``method`` among the first ``pool`` (default
    ``max(20 * count, 1000)``, at most ``MAX_POOL[method]``); 'first' is ``0 .. count - 1``."""
    if method not in METHODS:
        raise LatkitError(f"unknown selection {method!r} (known: {', '.join(METHODS)})")
    if method == "first" or count == 0:
        return list(range(count))
    limit = MAX_POOL[method]
    if pool is not None and pool > limit:
        raise LatkitError(f"a pool of {pool} candidates is more than {method} selection draws from (at most "
                          f"{limit})")
    pool = min(max(20 * count, 1000), limit) if pool is None else pool
    if pool < count:
        raise LatkitError(f"cannot select {count} architectures from a pool of {pool}"
                          + (f" (a {method} pool holds at most {limit})" if pool == limit else ""))
    if method == "random":
        rng = np.random.default_rng([seed, count, pool])
        return sorted(int(i) for i in rng.choice(pool, size=count, replace=False))
    return sorted(d_optimal(design_features([sample(seed, i) for i in range(pool)]), count))


def design_features(genotypes: list) -> np.ndarray:
    """A constant and the op-group counts of each genotype: what a transfer fit learns from."""
    return np.column_stack([np.ones(len(genotypes)), encode_many(genotypes) @ op_groups()])


def d_optimal(features: np.ndarray, count: int) -> list[int]:
    """Greedy D-optimal design: ``count`` rows of ``features``, each the one of largest leverage given the chosen."""
    inverse = np.eye(features.shape[1])  # (F'F + I)^-1 of the empty design
    chosen: list[int] = []
    for _ in range(count):
        leverage = np.einsum("ij,jk,ik->i", features, inverse, features)
        leverage[chosen] = -np.inf
        i = int(np.argmax(leverage))  # ties: the lowest index
        chosen.append(i)
        v = inverse @ features[i]
        inverse -= np.outer(v, v) / (1.0 + features[i] @ v)  # Sherman-Morrison: add row i
    return chosen
