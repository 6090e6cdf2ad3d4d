"""The relaxed architecture's latency: identified by genotype data, and the genotype's latency in the limit."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from latkit.predictors import load_predictor, make_predictor
from latkit.predictors.base import differentiable_kinds
from latkit.predictors.recommend import load_table
from latkit.search.penalty import LatencyPenalty
from latkit.space import EDGES_PER_CELL, NODES, PRIMITIVES, PUBLISHED, edge_index, encode, encode_many, sample

# every embedded predictor a search may be given: each target of the recommendation table x each differentiable kind
SEARCHABLE = [(f"{r['backend']}/{r['device']}", k) for r in load_table()["rows"] for k in differentiable_kinds()]


def sharpened(genotype, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(T * one-hot encoding): alphas that sharpen toward ``genotype`` as T grows."""
    onehot = torch.from_numpy(encode(genotype)).reshape(2, EDGES_PER_CELL, len(PRIMITIVES))
    w = F.softmax(temperature * onehot, dim=-1)
    return w[0], w[1]


def relaxed_ms(predictor, weights: tuple[torch.Tensor, torch.Tensor]) -> float:
    with torch.no_grad():
        return float(LatencyPenalty(predictor, 1.0, reference_ms=1.0).latency_ms(weights))


def test_relaxed_encoding_keeps_two_inputs_per_node() -> None:
    alphas = torch.randn(2, EDGES_PER_CELL, len(PRIMITIVES)) * 3
    x = encode(tuple(F.softmax(alphas, dim=-1))).reshape(2, EDGES_PER_CELL, len(PRIMITIVES))
    torch.testing.assert_close(x.sum(-1), torch.ones(2, EDGES_PER_CELL))
    for node in range(NODES):
        start = edge_index(node, 0)
        kept = 1 - x[:, start: start + node + 2, 0]
        torch.testing.assert_close(kept.sum(-1), torch.full((2,), 2.0))  # what every genotype has


@pytest.mark.parametrize("backend, kind", SEARCHABLE)
def test_sharpening_converges_to_the_genotype_latency(backend: str, kind: str) -> None:
    predictor = load_predictor(backend, kind=kind)
    for index in range(10):
        g = sample(7, index)
        target = float(predictor.predict_ms(encode_many([g]))[0])
        errors = [abs(relaxed_ms(predictor, sharpened(g, t)) / target - 1) for t in (1.0, 4.0, 16.0)]
        assert errors[-1] < 0.01, (g, errors)
        assert errors[-1] <= errors[0] + 1e-6


def _gauge(additive, rng: np.random.Generator):
    """A copy of an additive predictor that gives every genotype the same latency by other weights, moved along
    the directions genotype data cannot see: a constant added to all 8 entries of an edge (each edge's one-hot
    sums to 1), and a constant added to every 'none' of a node (a node always has ``node`` 'none' edges)."""
    w = additive.w.reshape(2, EDGES_PER_CELL, len(PRIMITIVES)).copy()
    for c in range(2):
        for node in range(NODES):
            w[c, edge_index(node, 0): edge_index(node, 0) + node + 2, 0] += rng.normal(0, 5.0)
    w += rng.normal(0, 5.0, (2, EDGES_PER_CELL, 1))
    other = make_predictor("additive")
    other.w = w.reshape(-1)
    x = encode_many(sample(0, i) for i in range(50))
    other.b = additive.b
    other.b += float(np.mean(additive.predict_ms(x) - other.predict_ms(x)))  # the shifts are one constant
    return other


def test_no_op_that_cannot_appear_in_a_genotype_changes_the_relaxed_latency() -> None:
    base = load_predictor("onnxruntime", kind="additive")
    other = _gauge(base, np.random.default_rng(0))
    x = encode_many(sample(5, i) for i in range(300))
    np.testing.assert_allclose(other.predict_ms(x), base.predict_ms(x), rtol=1e-6)  # same on every genotype
    assert np.abs(other.w - base.w).max() > 1.0  # by very different weights on 'none'
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        weights = tuple(F.softmax(torch.randn(2, EDGES_PER_CELL, len(PRIMITIVES), generator=g) * 2, dim=-1))
        assert relaxed_ms(other, weights) == pytest.approx(relaxed_ms(base, weights), rel=1e-4)
        raw = torch.cat([w.reshape(-1) for w in weights])  # the old relaxation: raw softmax weights
        assert abs(float(other.torch_ms(raw)) - float(base.torch_ms(raw))) > 0.1  # ...was not identified


@pytest.mark.parametrize("backend, kind", SEARCHABLE)
def test_uniform_and_all_none_alphas_lie_inside_the_genotype_range(backend: str, kind: str) -> None:
    predictor = load_predictor(backend, kind=kind)
    genotypes = predictor.predict_ms(encode_many(sample(0, i) for i in range(1000)))
    lo, hi = float(genotypes.min()), float(genotypes.max())
    uniform = tuple(F.softmax(torch.zeros(2, EDGES_PER_CELL, len(PRIMITIVES)), dim=-1))
    none = torch.zeros(2, EDGES_PER_CELL, len(PRIMITIVES))
    none[..., 0] = 10.0  # every edge all but certainly 'none'
    for weights in (uniform, tuple(F.softmax(none, dim=-1))):
        assert lo < relaxed_ms(predictor, weights) < hi


def test_darts_v2_one_hot_is_its_own_relaxation() -> None:
    predictor = load_predictor("onnxruntime", kind="mlp")
    onehot = torch.from_numpy(encode(PUBLISHED["DARTS_V2"])).reshape(2, EDGES_PER_CELL, len(PRIMITIVES))
    assert relaxed_ms(predictor, (onehot[0], onehot[1])) == pytest.approx(
        float(predictor.predict_ms(encode_many([PUBLISHED["DARTS_V2"]]))[0]), rel=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_relaxed_encoding_is_the_mean_of_the_draw_enumerated(seed: int) -> None:
    """Against brute force: every ordered pair of kept edges per node, with the probability of drawing it without
    replacement in proportion to the edges' strengths, and each kept edge's op from its renormalised weights."""
    from itertools import permutations

    from latkit.space import relaxed_encoding

    w = torch.rand(EDGES_PER_CELL, len(PRIMITIVES), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    w = w ** 3 / (w ** 3).sum(-1, keepdim=True)  # uneven, like a softmax part-way through a search
    expected = np.zeros((EDGES_PER_CELL, len(PRIMITIVES)))
    for node in range(NODES):
        edges = [edge_index(node, j) for j in range(node + 2)]
        strength = np.array([float(w[e, 1:].max()) for e in edges])
        p = strength / strength.sum()
        for a, b in permutations(range(len(edges)), 2):
            prob = p[a] * p[b] / (1 - p[a])  # first a, then b among the rest
            for k in range(len(edges)):
                e = edges[k]
                if k in (a, b):
                    expected[e, 1:] += prob * (w[e, 1:] / w[e, 1:].sum()).numpy()
                else:
                    expected[e, 0] += prob
    np.testing.assert_allclose(relaxed_encoding(w).numpy(), expected, atol=1e-6)
