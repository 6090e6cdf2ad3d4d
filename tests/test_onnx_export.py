from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from latkit.network import NetConfig, Network, build
from latkit.onnx_export import INPUT_NAME, export, to_onnx
from latkit.space import PUBLISHED, Genotype, sample


def _randomise_batchnorm(model: Network, seed: int) -> None:
    """Fresh BNs are identities; random statistics make the folding actually matter in the parity test."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=gen) - 0.5)


def _relative_error(genotype, config: NetConfig, seed: int) -> float:
    model = build(genotype, config)
    _randomise_batchnorm(model, seed)
    proto = to_onnx(model)
    onnx.checker.check_model(proto)
    x = torch.randn(config.input_shape(), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = model(x).numpy()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    got = session.run(None, {INPUT_NAME: x.numpy()})[0]
    return float(np.abs(got - expected).max() / np.abs(expected).max())


@pytest.mark.parametrize("index", range(24))
def test_parity_on_sampled_genotypes_small(index: int) -> None:
    config = NetConfig(layers=5, channels=8, resolution=16, batch=2, classes=10)
    assert _relative_error(sample(11, index), config, seed=index) <= 1e-4


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_parity_published_default_config(name: str) -> None:
    assert _relative_error(PUBLISHED[name], NetConfig(), seed=1) <= 1e-4


@pytest.mark.parametrize("index", range(4))
def test_parity_sampled_default_config(index: int) -> None:
    assert _relative_error(sample(0, index), NetConfig(batch=2), seed=index) <= 1e-4


# 'none' edges: a node with one is the other edge's output; a node with two is zeros, in a normal cell (node 3,
# read again by node 5) and in a reduction cell (node 2, from the strided inputs).
BOTH_NONE = Genotype.make(
    normal=[("sep_conv_3x3", 0), ("none", 1), ("none", 0), ("none", 2), ("skip_connect", 1), ("dil_conv_3x3", 3),
            ("sep_conv_5x5", 3), ("none", 4)],
    reduce=[("none", 0), ("none", 1), ("max_pool_3x3", 0), ("sep_conv_3x3", 2), ("none", 2), ("skip_connect", 1),
            ("avg_pool_3x3", 1), ("none", 3)])


@pytest.mark.parametrize("genotype", [PUBLISHED["SNAS_AGGRESSIVE"], BOTH_NONE], ids=["snas_aggressive", "both_none"])
def test_parity_with_none_edges(genotype: Genotype) -> None:
    config = NetConfig(layers=5, channels=8, resolution=16, batch=2, classes=10)
    assert _relative_error(genotype, config, seed=3) <= 1e-4
    assert _relative_error(genotype, NetConfig(batch=2), seed=4) <= 1e-4


def test_none_edges_are_left_out_of_the_graph() -> None:
    kinds = [n.op_type for n in to_onnx(build(PUBLISHED["SNAS_AGGRESSIVE"], NetConfig())).graph.node]
    # 18 normal cells x 4 nodes of 2 edges; the reduction cells' nodes each have at most one op, so no Add, and
    # their two all-'none' nodes are a zero (Slice + Mul) each
    assert kinds.count("Add") == 18 * 4
    assert kinds.count("Mul") == 2 * 2


def test_parity_other_shapes() -> None:
    config = NetConfig(layers=6, channels=12, resolution=28, in_channels=1, classes=3, batch=1)
    assert _relative_error(sample(5, 5), config, seed=5) <= 1e-4


def test_export_writes_file_with_fixed_shape(tmp_path) -> None:
    path = export(build(PUBLISHED["DARTS_V2"], NetConfig(batch=8)), tmp_path / "sub" / "m.onnx")
    proto = onnx.load(str(path))
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [8, 3, 32, 32]
    assert proto.doc_string.startswith("Genotype(")
