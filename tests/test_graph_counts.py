"""benchmarks/graph_counts.py: onnxruntime's optimised graph as features (a synthetic file; one tiny real graph)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from latkit.errors import LatkitError
from latkit.network import NetConfig, reduction_layers
from latkit.space import MERGE_KEYS, encode, encode_many, merged_ops, op_groups, sample
from test_datasets import _dataset, row
from test_merged_ops import POOLS

from benchmarks import graph_counts


N = 600
HIDDEN = np.random.default_rng(4).integers(0, 40, N)  # a node count of the optimised graph no encoding holds


def test_a_graph_count_the_encoding_cannot_see_is_found(tmp_path: Path) -> None:
    costs = np.linspace(0.1, 1.0, op_groups().shape[1])
    true_ms = [5.0 + encode(sample(0, i)) @ op_groups() @ costs + 0.05 * HIDDEN[i] for i in range(N)]
    path = _dataset(tmp_path / "d.parquet", [row(i, true_ms[i] / 0.9) for i in range(N)])  # min_ms = 0.9 x median
    pools = merged_ops(encode_many(sample(0, i) for i in range(N))).sum(1)  # a count the encoding describes
    counts = {i: {"Reorder": int(HIDDEN[i]), "Gemm": 1, "Pools": int(pools[i])} for i in range(N)}
    out = {r["model"]: r for r in graph_counts.run(str(path), counts)}
    rows = {name: r["mape_pct"] for name, r in out.items()}
    assert rows["op groups + graph counts"] < 0.01 < rows["op groups"]
    assert rows["cse terms + Reorder"] < 0.01 and not any("Gemm" in m for m in rows)  # constant counts are dropped
    reorder, merged = out["cse terms + Reorder"], out["cse terms + Pools"]
    assert reorder["unexplained_sd"] == pytest.approx(reorder["count_sd"], rel=0.15)  # the encoding cannot see it
    assert merged["count_sd"] > 0.5 and merged["unexplained_sd"] < 0.05


def test_only_onnxruntime_cpu_files_are_read(tmp_path: Path) -> None:
    path = _dataset(tmp_path / "d.parquet", [row(i, 1.0) for i in range(10)])
    with pytest.raises(LatkitError, match="fake/cpu: this reads onnxruntime/cpu"):
        graph_counts.graph_counts(str(path), 1, None)


def test_optimised_counts_see_the_merged_pools() -> None:
    pytest.importorskip("onnxruntime")
    config = NetConfig(layers=5, channels=8)
    cells = np.array([config.layers - len(reduction_layers(config.layers)), len(reduction_layers(config.layers))])
    for genotype in [POOLS] + [sample(0, i) for i in range(2)]:
        counts = graph_counts.optimised_counts(genotype, config)
        written = sum(n * sum(op.endswith("pool_3x3") for op, _ in cell)
                      for n, cell in zip(cells, (genotype.normal, genotype.reduce)))
        per_cell = merged_ops(encode_many([genotype]))[0].reshape(2, 2, len(MERGE_KEYS)).sum(1)
        merged = cells @ per_cell[:, [MERGE_KEYS.index("max_pool_3x3"), MERGE_KEYS.index("avg_pool_3x3")]].sum(1)
        assert counts.get("MaxPool", 0) + counts.get("AveragePool", 0) == written - merged
        assert counts["Conv"] > 0
    assert merged_ops(encode_many([POOLS])).sum() > 0  # the first network has pools to merge
