"""Why torch-compile is refused the duet: an architecture and DARTS_V2 compiled side by side, timed alone and in a duet.

Usage: python benchmarks/compile_duet.py [--core 1] [--index 0]

Tiny network (3 cells, 4 channels, 8x8) so that compiling stays in minutes. Compiles sample(0, INDEX) (Dynamo reset
first, as the backend does for every architecture), then DARTS_V2 beside it (no reset, as the duet would), and
prints the min of each timed alone and both in a duet. A trustworthy duet leaves each program's time as it is alone.
"""
from __future__ import annotations

import argparse
import os
import time

from latkit.backends.registry import get_backend
from latkit.backends.timing import MeasureProtocol, measure
from latkit.network import NetConfig, build
from latkit.space import PUBLISHED, sample


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--core", type=int, default=1)
    p.add_argument("--index", type=int, default=0)
    args = p.parse_args()
    os.sched_setaffinity(0, {args.core})
    config = NetConfig(layers=3, channels=4, resolution=8)
    backend = get_backend("torch-compile")
    protocol = MeasureProtocol(warmup_runs=5, warmup_ms=200, repeats=30)
    t0 = time.perf_counter()
    model = backend.prepare(build(sample(0, args.index), config))
    t1 = time.perf_counter()
    alone = measure(model, protocol).stats.min_ms
    reference = backend.prepare(build(PUBLISHED["DARTS_V2"], config), beside=model)
    t2 = time.perf_counter()
    after = measure(model, protocol).stats.min_ms
    ref_alone = measure(reference, protocol).stats.min_ms
    duet = measure(model, protocol, reference)
    print(f"compile: architecture {t1 - t0:.0f} s, reference beside it {t2 - t1:.0f} s")
    print(f"architecture alone {alone:.3f} ms, alone after the reference was compiled {after:.3f} ms, "
          f"in the duet {duet.stats.min_ms:.3f} ms")
    print(f"reference alone {ref_alone:.3f} ms, in the duet {duet.reference.min_ms:.3f} ms")
    print(f"ratio in the duet {duet.stats.min_ms / duet.reference.min_ms:.3f}, ratio of the times alone "
          f"{after / ref_alone:.3f}")


if __name__ == "__main__":
    main()
