"""space.merged_ops and the cse predictor: the ops a graph runtime's common-subexpression elimination merges."""
from __future__ import annotations

import collections

import numpy as np
import pytest
import torch

from latkit.network import NetConfig, build, reduction_layers
from latkit.ops import merge_key
from latkit.predictors import make_predictor, metrics
from latkit.space import MERGE_KEYS, PUBLISHED, encode, encode_many, merged_ops, op_groups, parse, sample


def by_reading(genotype) -> np.ndarray:
    """merged_ops read off the genotype's edge list: per cell, source kind and key, sum over states of max(n-1, 0)."""
    out = np.zeros((2, 2, len(MERGE_KEYS)))
    for c, edges in enumerate((genotype.normal, genotype.reduce)):
        readers = collections.Counter((j, merge_key(op, 2 if c == 1 and j < 2 else 1)) for op, j in edges)
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
    genotypes = [sample(0, i) for i in range(6)]
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
    assert predicted[:, 2].std() > 0 and (constant == constant[0]).all() and (constant[0, :2] == 0).all()


def test_openvino_merges_the_pools_merged_ops_counts() -> None:
    """OpenVINO too: its compiled CPU graph has one pooling layer per pool that merged_ops does not merge (its ReLUs
    are fused into convolutions, so they cannot be counted)."""
    ov = pytest.importorskip("openvino")
    from latkit.onnx_export import to_onnx

    config = NetConfig(layers=5, channels=8)
    cells = np.array([config.layers - len(reduction_layers(config.layers)), len(reduction_layers(config.layers))])
    pools = "('max_pool_3x3', 0), ('avg_pool_3x3', 1), ('max_pool_3x3', 0), ('avg_pool_3x3', 2), ('max_pool_3x3', 0), " \
            "('avg_pool_3x3', 1), ('avg_pool_3x3', 3), ('max_pool_3x3', 1)"
    genotypes = [parse(f"Genotype(normal=[{pools}], normal_concat=[2, 3, 4, 5], reduce={PUBLISHED['DARTS_V2'].reduce!r}"
                       ", reduce_concat=[2, 3, 4, 5])")] + [sample(0, i) for i in range(4)]
    core = ov.Core()
    for genotype in genotypes:
        model = core.read_model(to_onnx(build(genotype, config)).SerializeToString(), b"")
        written = sum(op.get_type_name() in ("MaxPool", "AvgPool") for op in model.get_ops())
        runtime = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": 1}).get_runtime_model()
        compiled = sum(op.get_rt_info()["layerType"].astype(str) == "Pooling" for op in runtime.get_ops())
        per_cell = merged_ops(encode_many([genotype]))[0].reshape(2, 2, len(MERGE_KEYS)).sum(1)
        merged = cells @ per_cell[:, [MERGE_KEYS.index("max_pool_3x3"), MERGE_KEYS.index("avg_pool_3x3")]].sum(1)
        assert written - compiled == merged
    assert merged_ops(encode_many(genotypes[:1])).sum() >= 3


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
