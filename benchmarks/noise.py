"""Repeatability of the measurement protocol: measure the same architectures twice, compare the statistics.

Usage: python -m benchmarks.noise --backend onnxruntime [--count 15] [--threads 1,2] [--repeats 30]
For each thread count, two independent passes (fresh build and session each time) over the same sampled
architectures; prints the MAPE between the passes for every statistic. Lower is more repeatable.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from latkit.backends.timing import MeasureProtocol
from latkit.datasets.store import STAT_COLUMNS
from latkit.backends.registry import get_backend
from latkit.env import cpu_model
from latkit.measure import time_genotype
from latkit.network import NetConfig
from latkit.space import sample

STATS = [c for c in STAT_COLUMNS if c.endswith("_ms") and c != "std_ms"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--count", type=int, default=15)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=MeasureProtocol().repeats)
    args = parser.parse_args()
    config = NetConfig()
    genotypes = [sample(1234, i) for i in range(args.count)]
    print(f"{args.backend}, {args.count} architectures (seed 1234), {args.repeats} repeats, {cpu_model()}\n")
    print("| threads | s/arch | " + " | ".join(f"MAPE {s}" for s in STATS) + " |")
    print("|---|---|" + "---|" * len(STATS))
    for threads in (int(t) for t in args.threads.split(",")):
        protocol = MeasureProtocol(repeats=args.repeats, threads=threads)
        backend = get_backend(args.backend, "cpu", threads)
        t0 = time.perf_counter()
        passes = [[time_genotype(backend, g, config, protocol) for g in genotypes] for _ in range(2)]
        per_arch = (time.perf_counter() - t0) / (2 * args.count)
        mape = [100 * np.mean([abs(b[s] - a[s]) / a[s] for a, b in zip(*passes)]) for s in STATS]
        print(f"| {threads} | {per_arch:.2f} | " + " | ".join(f"{m:.2f}%" for m in mape) + " |")


if __name__ == "__main__":
    main()
