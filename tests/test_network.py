from __future__ import annotations

import pytest
import torch

from latkit.errors import LatkitError
from latkit.network import NetConfig, build, count_macs, count_params, reduction_layers
from latkit.space import PUBLISHED, sample


@pytest.mark.parametrize("name, params_m, macs_m", [
    ("DARTS_V2", 3.349, 528.4),   # paper: 3.3M params; 528M mult-adds
    ("PC_DARTS", 3.635, 556.7),   # PC-DARTS paper: 3.6M params, ~558M (pooling ops not counted here)
])
def test_published_sizes(name: str, params_m: float, macs_m: float) -> None:
    model = build(PUBLISHED[name])
    assert count_params(model) / 1e6 == pytest.approx(params_m, abs=1e-3)
    assert count_macs(model) / 1e6 == pytest.approx(macs_m, abs=0.1)


def test_shapes_and_reductions() -> None:
    config = NetConfig(layers=8, channels=8, resolution=16, in_channels=1, classes=7, batch=3)
    model = build(sample(0, 2), config)
    assert reduction_layers(8) == (2, 5)
    assert [c.reduction for c in model.cells] == [i in (2, 5) for i in range(8)]
    out = model(torch.randn(config.input_shape()))
    assert out.shape == (3, 7)
    assert not model.training


def test_macs_scale_with_batch() -> None:
    g = sample(0, 4)
    one = count_macs(build(g, NetConfig(layers=5, channels=8)))
    assert count_macs(build(g, NetConfig(layers=5, channels=8, batch=4))) == 4 * one


@pytest.mark.parametrize("field, value, fault", [
    ("resolution", 30, "multiple of 4"), ("channels", 15, "even"), ("layers", 2, ">= 3"), ("batch", 0, ">= 1"),
])
def test_bad_config(field: str, value: int, fault: str) -> None:
    with pytest.raises(LatkitError, match=fault):
        NetConfig(**{field: value})
