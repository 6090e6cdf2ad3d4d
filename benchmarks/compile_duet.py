"""Does torch-compile keep its times in a duet? An architecture and DARTS_V2 compiled side by side, timed alone and
in a duet, beside the same pair in eager torch as the control.

Usage: python -m benchmarks.compile_duet [--core 1] [--indices 0,1,2,3,4] [--rounds 5] [--full]

Tiny network (3 cells, 4 channels, 8x8) so that compiling stays in seconds; ``--full``: the datasets' network (20
cells, 36 channels, 32x32; about 2 minutes of compiling per network). For each architecture sample(0, i):
compile it (Dynamo reset first, as the backend does for every architecture), then DARTS_V2 beside it (no reset, as
the duet does); then ``rounds`` rounds of: the architecture alone, the reference alone, both in a duet. Each figure is
the min over rounds of the protocol's min, so one slow window on a shared core does not decide it. A trustworthy duet
gives the ratio of the times alone; eager torch shows how far a duet moves it where nothing is compiled.
"""
from __future__ import annotations

import argparse
import os

import numpy as np

from latkit.backends.registry import get_backend
from latkit.backends.timing import MeasureProtocol, measure
from latkit.network import NetConfig, build
from latkit.space import PUBLISHED, sample


def one(index: int, rounds: int, backend_name: str, config: NetConfig) -> dict[str, float]:
    """sample(0, index) and DARTS_V2 prepared side by side on one backend: the min over rounds of each one's min,
    alone and in the duet."""
    backend = get_backend(backend_name)
    protocol = MeasureProtocol(warmup_runs=5, warmup_ms=200, repeats=30)
    model = backend.prepare(build(sample(0, index), config))
    reference = backend.prepare(build(PUBLISHED["DARTS_V2"], config), beside=model)
    alone, ref_alone, duet, ref_duet = [], [], [], []
    try:
        for _ in range(rounds):
            alone.append(measure(model, protocol).stats.min_ms)
            ref_alone.append(measure(reference, protocol).stats.min_ms)
            pair = measure(model, protocol, reference)
            duet.append(pair.stats.min_ms)
            ref_duet.append(pair.reference.min_ms)
    finally:
        model.close()
        reference.close()
    return {"alone": min(alone), "ref_alone": min(ref_alone), "duet": min(duet), "ref_duet": min(ref_duet)}


def main() -> None:
    """Both backends for each architecture, a table row each, then the median and max discrepancy per backend."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--core", type=int, default=1)
    p.add_argument("--indices", default="0,1,2,3,4")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--full", action="store_true")
    args = p.parse_args()
    os.sched_setaffinity(0, {args.core})
    config = NetConfig() if args.full else NetConfig(layers=3, channels=4, resolution=8)
    print(f"network {config.to_dict()}\n")
    print("| architecture | backend | alone ms | in the duet ms | reference alone ms | reference in the duet ms | "
          "ratio alone | ratio in the duet | duet / alone |\n|---|---|---|---|---|---|---|---|---|")
    errors: dict[str, list[float]] = {"torch-compile": [], "torch": []}
    for index in (int(i) for i in args.indices.split(",")):
        for name in errors:
            r = one(index, args.rounds, name, config)
            alone, duet = r["alone"] / r["ref_alone"], r["duet"] / r["ref_duet"]
            errors[name].append(abs(duet / alone - 1))
            print(f"| sample(0, {index}) | {name} | {r['alone']:.3f} | {r['duet']:.3f} | "
                  f"{r['ref_alone']:.3f} | {r['ref_duet']:.3f} | {alone:.3f} | {duet:.3f} | {duet / alone:.3f} |",
                  flush=True)
    for name, e in errors.items():
        print(f"{name}: the duet's ratio off the ratio alone by a median {100 * np.median(e):.1f}% "
              f"(max {100 * max(e):.1f}%)")


if __name__ == "__main__":
    main()
