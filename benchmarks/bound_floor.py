"""How fast can a bounded cell be? The fastest genotype a predictor knows with at most K parameter-free ops in the
normal cell (coordinate descent over every (op, input) slot of both cells, from four starts), measured beside DARTS_V2.

Usage: python -m benchmarks.bound_floor [--target onnxruntime] [--max-free 2,8] [--measure]
"""
from __future__ import annotations

import argparse
import itertools
import json

from latkit.ops import parameter_free_ops
from latkit.predictors import load_predictor
from latkit.space import PRIMITIVES, PUBLISHED, Genotype, encode_many

Cell = list[tuple[str, int]]


def fastest(predictor, max_free: int, starts: tuple[str, ...] = ("dil_conv_3x3", "sep_conv_3x3", "skip_connect",
                                                                  "max_pool_3x3")) -> tuple[float, Genotype]:
    """The lowest predicted latency (and its genotype) reachable by changing one slot at a time."""
    free, ops = set(parameter_free_ops()), [o for o in PRIMITIVES if o != "none"]

    def ms(normal: Cell, reduce: Cell) -> float:
        return float(predictor.predict_ms(encode_many([Genotype.make(normal=normal, reduce=reduce)]))[0])

    best = None
    for start in starts:
        cells = [[(start if start not in free or max_free >= 8 else "dil_conv_3x3", k % 2) for k in range(8)],
                 [("max_pool_3x3", k % 2) for k in range(8)]]
        now, improved = ms(*cells), True
        while improved:
            improved = False
            for cell, slot in itertools.product((0, 1), range(8)):
                for op, j in itertools.product(ops, range(slot // 2 + 2)):
                    trial = [list(c) for c in cells]
                    trial[cell][slot] = (op, j)
                    if trial[cell][slot ^ 1][1] == j or sum(o in free for o, _ in trial[0]) > max_free:
                        continue  # a node's two inputs differ; the bound holds
                    value = ms(*trial)
                    if value < now - 1e-9:
                        cells, now, improved = trial, value, True
        if best is None or now < best[0]:
            best = (now, Genotype.make(normal=cells[0], reduce=cells[1]))
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", default="onnxruntime")
    p.add_argument("--max-free", default="2,8", help="bounds to try (8: none)")
    p.add_argument("--measure", action="store_true", help="measure each beside DARTS_V2 (latkit's protocol)")
    args = p.parse_args()
    from latkit.search.pipeline import deployment_config, measure_ms

    predictor = load_predictor(args.target)
    darts = float(predictor.predict_ms(encode_many([PUBLISHED["DARTS_V2"]]))[0])
    for k in (int(v) for v in args.max_free.split(",")):
        ms, genotype = fastest(predictor, k)
        row = {"target": args.target, "predictor": predictor.kind, "max_free": k, "predicted_ms_normalised": ms,
               "predicted_x_darts_v2": ms / darts, "genotype": str(genotype)}
        if args.measure:
            m = measure_ms(args.target, "cpu", genotype, deployment_config(predictor))
            row.update(measured_x_darts_v2=m["ratio"], measured_ms_normalised=predictor.in_unit_ms(m["min_ms"],
                                                                                                   m["ratio"]),
                       measured_ms_raw=m["min_ms"])
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
