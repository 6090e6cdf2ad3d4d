"""Does a rule against the collapse change what the seeded sweep finds? (P-DARTS' skip bound, issue 22; the bound on
every parameter-free op and beta-DARTS' regulariser, issue 33)

Usage: python -m benchmarks.max_skip BASE/sweep.json ARM/sweep.json [ARM2/sweep.json ...] [--label NAME ...]

The first file is a sweep without the rule; each other file is an arm (one sweep, or one per seed: give the same
``--label`` to each file of one arm; default: every file is one arm, ``with``). For each lambda and seed found in
the base and every arm: the normal cell's parameter-free ops (skips), the trained network's test accuracy (same
training seed), and the latency on the target in DARTS_V2's units (a ratio from the same window where the sweep timed
each genotype beside DARTS_V2; else to DARTS_V2 timed in another window). Then each arm's mean +- standard deviation
over seeds.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from latkit.search.searcher import cell_report
from latkit.space import parse


def runs(path: str) -> dict[tuple[str, int], dict]:
    """(name, seed) -> parameter-free ops and skips of the normal cell, accuracy and ratio to DARTS_V2."""
    doc = json.loads(Path(path).read_text())
    target = doc["target"]
    darts = {r["seed"]: r["latency_ms"][target] for r in doc["rows"] if r["name"] == "DARTS_V2"}
    out = {}
    for r in doc["rows"]:
        ratio = (r.get("latency_ratio") or {}).get(target)
        normal = cell_report(parse(r["genotype"]))["normal"]
        out[r["name"], r["seed"]] = {
            "free": normal["parameter_free"], "skips": normal["skip_connect"], "accuracy_pct": 100 * r["test_accuracy"],
            "ratio": ratio if ratio is not None else r["latency_ms"][target] / darts[r["seed"]]}
    return out


def _mean_std(values: list[float]) -> str:
    return f"{statistics.fmean(values):.3f} +- {statistics.stdev(values) if len(values) > 1 else 0.0:.3f}"


def main() -> None:
    """Print the side-by-side table and each arm's means over seeds."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("base")
    p.add_argument("arms", nargs="+")
    p.add_argument("--label", action="append", help="the arm of each file, in order (default: with)")
    args = p.parse_args()
    labels = args.label or ["with"] * len(args.arms)
    if len(labels) != len(args.arms):
        p.error("give one --label per arm file, or none")
    base = runs(args.base)
    arms: dict[str, dict[tuple[str, int], dict]] = {}
    for label, path in zip(labels, args.arms):
        arms.setdefault(label, {}).update(runs(path))
    keys = sorted(k for k in base if k[0] != "DARTS_V2" and all(k in arm for arm in arms.values()))
    names = ["without", *arms]
    sides = [base, *arms.values()]
    print(f"Arms: {' / '.join(names)}\n")
    print("| lambda | seed | normal cell: parameter-free (skips) | test acc % | x DARTS_V2 |\n|---|---|---|---|---|")
    for key in keys:
        print(f"| {key[0]} | {key[1]} | " + " / ".join(f"{s[key]['free']} ({s[key]['skips']})" for s in sides)
              + " | " + " / ".join(f"{s[key]['accuracy_pct']:.2f}" for s in sides)
              + " | " + " / ".join(f"{s[key]['ratio']:.3f}" for s in sides) + " |")
    for name in dict.fromkeys(k[0] for k in keys):
        mine = [k for k in keys if k[0] == name]
        print(f"\n{name}, {len(mine)} seeds:")
        for label, side in zip(names, sides):
            print(f"- {label}: accuracy {_mean_std([side[k]['accuracy_pct'] for k in mine])} %, x DARTS_V2 "
                  f"{_mean_std([side[k]['ratio'] for k in mine])}, parameter-free ops "
                  f"{_mean_std([side[k]['free'] for k in mine])}")
    seeds = sorted({s for _, s in keys})
    print("\nDARTS_V2 trained again with each seed (a check that training repeats): "
          + ", ".join(" / ".join(f"{side['DARTS_V2', s]['accuracy_pct']:.2f}" for side in sides
                                 if ("DARTS_V2", s) in side) for s in seeds))


if __name__ == "__main__":
    main()
