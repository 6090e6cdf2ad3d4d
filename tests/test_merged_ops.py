"""space.merged_ops and the cse predictor: the ops a graph runtime's common-subexpression elimination merges."""
from __future__ import annotations

import collections
import json

import numpy as np
import pytest
import torch

from latkit.network import NetConfig, build, reduction_layers
from latkit.ops import merge_key
from latkit.predictors import make_predictor, metrics
from latkit.space import (MERGE_KEYS, PRIMITIVES, PUBLISHED, edge_index, edge_stride, encode, encode_many, merged_ops,
                          op_groups, parse, sample)


# normal cell: three max pools read input 0, two avg pools input 1 (3 pools merge away per normal cell)
POOLS = parse("Genotype(normal=[('max_pool_3x3', 0), ('avg_pool_3x3', 1), ('max_pool_3x3', 0), ('avg_pool_3x3', 2), "
              "('max_pool_3x3', 0), ('avg_pool_3x3', 1), ('avg_pool_3x3', 3), ('max_pool_3x3', 1)], normal_concat=[2, "
              f"3, 4, 5], reduce={PUBLISHED['DARTS_V2'].reduce!r}, reduce_concat=[2, 3, 4, 5])")


def by_reading(genotype) -> np.ndarray:
    """merged_ops read off the genotype's edge list: per cell, source kind and key, sum over states of max(n-1, 0)."""
    out = np.zeros((2, 2, len(MERGE_KEYS)))
    for c, edges in enumerate((genotype.normal, genotype.reduce)):
        readers = collections.Counter((j, merge_key(op, edge_stride(c == 1, j))) for op, j in edges)
        for (j, key), n in readers.items():
            if key is not None:
                out[c, 0 if j < 2 else 1, MERGE_KEYS.index(key)] += n - 1
    return out.reshape(-1)


def test_merged_ops_match_a_direct_reading_of_each_genotype() -> None:
    genotypes = [sample(7, i) for i in range(40)]
    f = merged_ops(encode_many(genotypes))
    assert f.shape == (40, 4 * len(MERGE_KEYS)) and f.sum() > 0
    for g, genotype in enumerate(genotypes):
        np.testing.assert_array_equal(f[g], by_reading(genotype))


def test_merged_ops_by_hand() -> None:
    pools = "('max_pool_3x3', 0), ('avg_pool_3x3', 1)"
    g = parse(f"Genotype(normal=[{', '.join([pools] * 4)}], normal_concat=[2, 3, 4, 5], reduce=[('skip_connect', 0), "
              "('sep_conv_3x3', 1), ('sep_conv_5x5', 0), ('dil_conv_3x3', 2), ('max_pool_3x3', 2), ('sep_conv_3x3', "
              "3), ('dil_conv_5x5', 2), ('skip_connect', 1)], reduce_concat=[2, 3, 4, 5])")
    f = merged_ops(encode_many([g]))[0].reshape(2, 2, len(MERGE_KEYS))
    k = {key: MERGE_KEYS.index(key) for key in MERGE_KEYS}
    # normal: four max pools read input 0 and four avg pools input 1: three of each merge into the first
    assert f[0, 0, k["max_pool_3x3"]] == 3 and f[0, 0, k["avg_pool_3x3"]] == 3 and f[0].sum() == 6
    # reduce: input 0 feeds a FactorizedReduce and a sep conv (both open with a ReLU), input 1 a sep conv and a
    # FactorizedReduce; node 2 feeds a dil conv and a dil conv, and a max pool (no other pool to merge with)
    assert f[1, 0, k["relu"]] == 2 and f[1, 1, k["relu"]] == 1 and f[1].sum() == 3


def test_merged_ops_are_differentiable_and_agree_with_numpy() -> None:
    x = encode_many([sample(2, i) for i in range(10)])
    np.testing.assert_allclose(merged_ops(torch.from_numpy(x)).numpy(), merged_ops(x))
    assert merged_ops(x[:0]).shape == (0, 4 * len(MERGE_KEYS)) == tuple(merged_ops(torch.from_numpy(x[:0])).shape)
    assert merged_ops(x[0]).shape == (4 * len(MERGE_KEYS),)
    w = torch.full((2, 14, 8), 1 / 8, requires_grad=True)
    merged_ops(encode((w[0], w[1]))).sum().backward()
    assert w.grad.abs().sum() > 0


def test_onnxruntime_merges_what_merged_ops_counts(tmp_path) -> None:
    """The mechanism itself: onnxruntime's basic graph optimisations remove one ReLU or pool per merged op (plus
    a constant: the ReLUs that two cells' preprocessing apply to one cell's output)."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from latkit.onnx_export import to_onnx

    config = NetConfig(layers=5, channels=8)
    reductions = len(reduction_layers(config.layers))
    cells = np.array([config.layers - reductions, reductions])
    removed = []
    genotypes = [POOLS] + [sample(0, i) for i in range(5)]
    for i, genotype in enumerate(genotypes):
        model = to_onnx(build(genotype, config))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(tmp_path / f"{i}.onnx")
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        before = collections.Counter(n.op_type for n in model.graph.node)
        after = collections.Counter(n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node)
        removed.append([before[t] - after[t] for t in ("MaxPool", "AveragePool", "Relu")])
    per_cell = merged_ops(encode_many(genotypes)).reshape(-1, 2, 2, len(MERGE_KEYS)).sum(2)  # (n, cell, key)
    predicted = np.einsum("ncm,c->nm", per_cell, cells)[:, [MERGE_KEYS.index(k) for k in
                                                            ("max_pool_3x3", "avg_pool_3x3", "relu")]]
    constant = np.array(removed) - predicted
    assert predicted[:, 2].std() > 0 and predicted[0, :2].sum() > 0
    assert (constant == constant[0]).all() and (constant[0, :2] == 0).all()


def test_openvino_merges_the_pools_merged_ops_counts() -> None:
    """OpenVINO too: its compiled CPU graph has one pooling layer per pool that merged_ops does not merge (its ReLUs
    are fused into convolutions, so they cannot be counted)."""
    ov = pytest.importorskip("openvino")
    from latkit.onnx_export import to_onnx

    config = NetConfig(layers=5, channels=8)
    cells = np.array([config.layers - len(reduction_layers(config.layers)), len(reduction_layers(config.layers))])
    genotypes = [POOLS] + [sample(0, i) for i in range(4)]
    core = ov.Core()
    for genotype in genotypes:
        model = core.read_model(to_onnx(build(genotype, config)).SerializeToString(), b"")
        written = sum(op.get_type_name() in ("MaxPool", "AvgPool") for op in model.get_ops())
        runtime = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": 1}).get_runtime_model()
        compiled = sum(op.get_rt_info()["layerType"].astype(str) == "Pooling" for op in runtime.get_ops())
        per_cell = merged_ops(encode_many([genotype]))[0].reshape(2, 2, len(MERGE_KEYS)).sum(1)
        merged = cells @ per_cell[:, [MERGE_KEYS.index("max_pool_3x3"), MERGE_KEYS.index("avg_pool_3x3")]].sum(1)
        assert written - compiled == merged
    assert merged_ops(encode_many([POOLS])).sum() >= 3


def test_cse_predictor_learns_merged_costs_the_op_groups_cannot() -> None:
    rng = np.random.default_rng(0)
    group_costs, merge_costs = rng.uniform(0.1, 2.0, op_groups().shape[1]), rng.uniform(-1.5, -0.5, 4 * len(MERGE_KEYS))

    def truth(x: np.ndarray) -> np.ndarray:
        return 20.0 + x @ op_groups() @ group_costs + merged_ops(x) @ merge_costs

    x, test = encode_many(sample(5, i) for i in range(400)), encode_many(sample(6, i) for i in range(100))
    cse, groups = make_predictor("cse", ridge=1e-9), make_predictor("groups", ridge=1e-9)
    cse.fit(x, truth(x))
    groups.fit(x, truth(x))
    np.testing.assert_allclose(cse.predict_ms(test), truth(test), rtol=1e-6)
    assert metrics(truth(test), groups.predict_ms(test))["mape_pct"] > 1.0


def test_the_relaxation_is_the_expectation_over_the_genotypes_the_weights_describe() -> None:
    """Monte Carlo: genotypes drawn as ``relaxed_encoding`` defines them (each node keeps 2 edges, drawn without
    replacement in proportion to their strength; each kept edge's op from its renormalised non-'none' weights)."""
    rng = np.random.default_rng(0)
    weights = torch.softmax(torch.from_numpy(rng.normal(0, 1.5, (2, 14, 8))), -1)
    relaxed = merged_ops(encode((weights[0], weights[1]))).numpy()
    w = weights.numpy()
    draws, total = 20000, np.zeros_like(relaxed)
    for c in range(2):
        ops = w[c, :, 1:] / w[c, :, 1:].sum(-1, keepdims=True)
        strength = w[c, :, 1:].max(-1)
        x = np.zeros((draws, 2, 14, 8))
        x[:, :, :, 0] = 1.0
        for node in range(4):
            edges = np.arange(edge_index(node, 0), edge_index(node, 0) + node + 2)
            p = strength[edges] / strength[edges].sum()
            first = rng.choice(len(edges), draws, p=p)
            rest = np.tile(p, (draws, 1))
            rest[np.arange(draws), first] = 0.0
            second = (rest.cumsum(1) / rest.sum(1, keepdims=True) < rng.random((draws, 1))).sum(1)
            for pick in (first, second):
                e = edges[pick]
                op = 1 + np.minimum((ops[e].cumsum(1) < rng.random((draws, 1))).sum(1), 6)
                x[np.arange(draws), c, e, 0] = 0.0
                x[np.arange(draws), c, e, op] = 1.0
        total += merged_ops(x.reshape(draws, -1)).mean(0)  # the other cell, all 'none', merges nothing
    np.testing.assert_allclose(relaxed, total, atol=0.03)
    # the plug-in max(E n - 1, 0) is not the expectation: it would fail the check above
    cells = encode((weights[0], weights[1])).numpy().reshape(2, 14, 8)
    naive = np.zeros_like(relaxed).reshape(2, 2, len(MERGE_KEYS))
    for c in range(2):
        for j in range(6):
            for k, key in enumerate(MERGE_KEYS):
                n = sum(cells[c, edge_index(node, j), o] for node in range(4) if j < node + 2
                        for o, op in enumerate(PRIMITIVES) if merge_key(op, edge_stride(c == 1, j)) == key)
                naive[c, 0 if j < 2 else 1, k] += max(n - 1.0, 0.0)
    assert np.abs(naive.reshape(-1) - total).max() > 0.1
    assert relaxed.sum() > 1.0


def test_cse_predictor_round_trips_its_merged_costs_and_refuses_a_wrong_width(tmp_path) -> None:
    from safetensors.torch import load_file, save_file

    from latkit.predictors import PredictorError
    from latkit.predictors.base import load_dir

    x = encode_many(sample(5, i) for i in range(300))
    y = 10.0 + x @ op_groups() @ np.linspace(0.1, 1.0, 28) - 0.8 * merged_ops(x).sum(1)
    p = make_predictor("cse")
    p.fit(x, y)
    assert np.abs(p.v).max() > 0.1
    again = load_dir(p.save(tmp_path / "cse"))
    np.testing.assert_array_equal(again.v, p.v)
    np.testing.assert_allclose(again.predict_ms(x), p.predict_ms(x))
    weights = tmp_path / "cse" / "weights.safetensors"
    t = load_file(str(weights))
    save_file({**t, "v": t["v"][:-1].contiguous()}, str(weights))
    with pytest.raises(PredictorError, match="differs from the one saved with its predictor.json"):
        load_dir(tmp_path / "cse")  # the digest tells first
    from latkit.predictors.base import DIGESTS, META_FILE

    meta = tmp_path / "cse" / META_FILE
    meta.write_text(json.dumps({k: v for k, v in json.loads(meta.read_text()).items() if k != DIGESTS}))
    with pytest.raises(PredictorError, match="224 per-edge costs and 11 extra ones, where a cse predictor has 224 and"):
        load_dir(tmp_path / "cse")  # a directory from before the digests: the width check
    assert make_predictor("cse").predict_ms(x[:2]).shape == (2,)  # unfitted: zeros of the right width
