"""Is a GPU dataset launch-bound? Count the ATen ops one forward dispatches (each launches at least one kernel on
CUDA) for the first N sampled architectures of a dataset, here on the CPU, and rank them against the measured latency.

    python -m benchmarks.launch_bound datasets/torch_cuda_b1_r32_c36_l20.parquet --count 40
"""
from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
from scipy.stats import spearmanr
from torch.utils._python_dispatch import TorchDispatchMode

from latkit.network import NetConfig, build
from latkit.space import parse


class _CountOps(TorchDispatchMode):
    """Counts every ATen op dispatched while active."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        self.ops += 1
        return func(*args, **(kwargs or {}))


def ops_per_forward(genotype: str, config: NetConfig) -> int:
    net = build(parse(genotype), config).eval()
    x = torch.randn(config.batch, 3, config.resolution, config.resolution)
    with torch.inference_mode(), _CountOps() as counter:
        net(x)
    return counter.ops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("--count", type=int, default=40)
    args = ap.parse_args()
    t = pq.read_table(args.dataset).to_pydict()
    rows = [r for r in (dict(zip(t, v)) for v in zip(*t.values())) if r["kind"] == "sample" and r["status"] == "ok"]
    rows = sorted(rows, key=lambda r: r["index"])[:args.count]
    config = NetConfig(batch=rows[0]["batch"], resolution=rows[0]["resolution"], channels=rows[0]["channels"],
                       layers=rows[0]["layers"])
    ops = np.array([ops_per_forward(r["genotype"], config) for r in rows])
    ms = np.array([r["min_ms"] for r in rows])
    print(f"{len(rows)} architectures of {args.dataset}: ATen ops per forward min {ops.min()}, median "
          f"{np.median(ops):.0f}, max {ops.max()}; Spearman(ops, min_ms) {spearmanr(ops, ms).statistic:.3f}; "
          f"min_ms per op median {np.median(ms / ops) * 1e3:.1f} us")


if __name__ == "__main__":
    main()
