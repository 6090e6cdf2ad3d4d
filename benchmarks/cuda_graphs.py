"""Eager torch against CUDA-graph replays, side by side on the same architectures (GPU only).

Usage: python -m benchmarks.cuda_graphs [--count 20] [--json graphs.json]

For each of the first ``count`` architectures of seed 0 at the default network, batch 1: the eager forward and the
replay of one captured forward, each timed with latkit's protocol (CUDA events on the runner's stream), alternating
per architecture so both see the same GPU state. Prints per architecture and the medians: at batch 1 eager torch
times the host's launch path, the graph the GPU's own work.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
from scipy import stats as sstats

from latkit.api import time_model
from latkit.backends.timing import MeasureProtocol
from latkit.space import sample


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=20)
    p.add_argument("--json")
    args = p.parse_args()
    protocol = MeasureProtocol()
    rows = []
    for i in range(args.count):
        g = sample(0, i)
        eager = time_model(g, "torch", "cuda", protocol=protocol).min_ms
        graph = time_model(g, "torch", "cuda", protocol=protocol, cuda_graph="true").min_ms
        rows.append({"index": i, "eager_ms": eager, "graph_ms": graph})
        print(f"{i}: eager {eager:.3f} ms, graph {graph:.3f} ms, eager/graph {eager / graph:.2f}", flush=True)
    e, g = np.array([r["eager_ms"] for r in rows]), np.array([r["graph_ms"] for r in rows])
    summary = {"count": len(rows), "median_eager_ms": float(np.median(e)), "median_graph_ms": float(np.median(g)),
               "median_eager_over_graph": float(np.median(e / g)),
               "spearman_eager_graph": float(sstats.spearmanr(e, g).statistic)}
    print(json.dumps(summary))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": summary, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
