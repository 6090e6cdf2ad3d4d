"""What torch.compile costs per architecture, and what regional compilation and Inductor's caches save.

Usage: python -m benchmarks.compile_time [--count 3] [--seed 0]

For each of the first ``count`` sampled architectures (default network, batch 1, one thread), in one process:
whole-network compilation with Inductor's on-disk caches off (cold), regional compilation (each cell module) with
the caches off (cold), and regional again with the caches on after a first regional compile has filled them (warm:
what a re-measured architecture costs). Prints compile + first-run seconds, Dynamo's unique graphs and the compiled
latency (min ms, latkit's protocol) beside eager's, measured in the same run.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch


def compile_once(genotype: object, regional: bool) -> tuple[float, int, float]:
    """(compile + first run seconds, unique graphs, compiled min ms) of one fresh compilation."""
    from torch._dynamo.utils import counters

    from latkit.backends.timing import MeasureProtocol, measure
    from latkit.backends.registry import get_backend
    from latkit.network import NetConfig, build

    counters.clear()
    backend = get_backend("torch-compile", "cpu", 1, {"regional": str(regional)})
    t0 = time.perf_counter()
    with backend.prepare(build(genotype, NetConfig())) as runner:
        seconds = time.perf_counter() - t0
        timing = measure(runner, MeasureProtocol())
    return seconds, int(counters["stats"]["unique_graphs"]), timing.stats.min_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="latkit-inductor-")  # start empty
    import torch._inductor.config as inductor_config

    from latkit.backends.timing import MeasureProtocol, measure
    from latkit.backends.registry import get_backend
    from latkit.network import NetConfig, build
    from latkit.space import sample

    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread, default network (20 cells, 36 channels, batch 1, 3x32x32)\n")
    print("| architecture | whole, cold s | regional, cold s | regional, warm cache s | graphs (whole / regional) | "
          "eager min ms | whole min ms | regional min ms |\n|---|---|---|---|---|---|---|---|")
    rows = []
    for index in range(args.count):
        g = sample(args.seed, index)
        with inductor_config.patch(force_disable_caches=True):
            whole = compile_once(g, regional=False)
            cold = compile_once(g, regional=True)
        compile_once(g, regional=True)  # fills the caches
        warm = compile_once(g, regional=True)
        eager = measure(get_backend("torch", "cpu", 1).prepare(build(g, NetConfig())), MeasureProtocol()).stats.min_ms
        rows.append((whole[0], cold[0], warm[0]))
        print(f"| sample({args.seed}, {index}) | {whole[0]:.1f} | {cold[0]:.1f} | {warm[0]:.1f} | {whole[1]} / {cold[1]} | "
              f"{eager:.2f} | {whole[2]:.2f} | {cold[2]:.2f} |", flush=True)
    med = [statistics.median(c) for c in zip(*rows)]
    print(f"\nmedian seconds: whole cold {med[0]:.1f}, regional cold {med[1]:.1f}, regional warm {med[2]:.1f}")


if __name__ == "__main__":
    main()
