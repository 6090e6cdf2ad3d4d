"""Shared fixtures; GPU and TensorRT tests skip with the reason when the hardware or runtime is absent."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch

from latkit.datasets.store import FORMAT, FORMAT_VERSION, open_writer
from latkit.space import ENCODING_SIZE, encode, sample


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="no CUDA GPU on this machine")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    torch.manual_seed(0)


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread: on a shared, busy CPU, OpenMP threads spinning for a core make these tests 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


COSTS = np.random.default_rng(0).uniform(0.0, 0.5, ENCODING_SIZE)  # ms per (cell, edge, op)


def known_latency(x: np.ndarray) -> np.ndarray:
    """2 ms + additive op costs + an interaction no additive model can express: a cost proportional to the
    product of the numbers of separable convolutions in the normal and in the reduction cell."""
    cells = x.reshape(len(x), 2, 14, 8)
    sep = cells[:, :, :, 4:6].sum(axis=(2, 3))  # sep_conv_3x3 and sep_conv_5x5 per cell
    return 2.0 + x @ COSTS + 0.3 * sep[:, 0] * sep[:, 1]


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ds") / "synthetic.parquet"
    header = {"format": FORMAT, "version": FORMAT_VERSION, "backend": "onnxruntime", "device": "cpu",
              "config": {"batch": 1, "layers": 5, "channels": 8, "resolution": 16}, "protocol": {}, "seed": 3,
              "sampler_version": 1, "environment": {"cpu": "T"}}
    writer, _ = open_writer(path, header)
    writer.compact_every = 10_000
    for i in range(1500):
        g = sample(3, i)
        ms = float(known_latency(encode(g)[None])[0])
        writer.append({"kind": "sample", "seed": 3, "index": i, "genotype": str(g), "backend": "onnxruntime",
                       "device": "cpu", "batch": 1, "resolution": 16, "channels": 8, "layers": 5,
                       **{s: ms for s in ("median_ms", "mean_ms", "min_ms", "p10_ms", "p90_ms", "iqm_ms")},
                       "std_ms": 0.0, "n": 1, "status": "ok", "error": "", "timestamp": str(i), "run_id": "t"})
    writer.compact()
    return path


