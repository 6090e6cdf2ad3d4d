from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from latkit.network import NetConfig, Network, build
from latkit.onnx_export import INPUT_NAME, export, to_onnx
from latkit.space import PUBLISHED, sample


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


def test_parity_other_shapes() -> None:
    config = NetConfig(layers=6, channels=12, resolution=28, in_channels=1, classes=3, batch=1)
    assert _relative_error(sample(5, 5), config, seed=5) <= 1e-4


def test_export_writes_file_with_fixed_shape(tmp_path) -> None:
    path = export(build(PUBLISHED["DARTS_V2"], NetConfig(batch=8)), tmp_path / "sub" / "m.onnx")
    proto = onnx.load(str(path))
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [8, 3, 32, 32]
    assert proto.doc_string.startswith("Genotype(")
