"""Does P-DARTS' rule (at most K skip connections in the normal cell) change what the seeded sweep finds? (issue 22)

Usage: python benchmarks/max_skip.py benchmarks/sweep_seeds/sweep.json RUN/sweep.json [RUN2/sweep.json ...]

The first file is the seeded sweep without the rule; the others are sweeps of the same settings with `--max-skip K`
(one file per seed, or one with several). For each lambda and seed found in both: the normal cell's skip connections,
the trained network's test accuracy (same training seed), and the latency on the target in DARTS_V2's units (the
old sweep timed each genotype alone, so its ratio is to DARTS_V2 timed in another window; the new sweeps time each
beside DARTS_V2, so theirs is from the same window). Then the mean +- standard deviation over seeds of each.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from latkit.space import parse


def runs(path: str) -> dict[tuple[str, int], dict]:
    """(name, seed) -> skip count, accuracy and ratio to DARTS_V2 on the sweep's target."""
    doc = json.loads(Path(path).read_text())
    target = doc["target"]
    darts = {r["seed"]: r["latency_ms"][target] for r in doc["rows"] if r["name"] == "DARTS_V2"}
    out = {}
    for r in doc["rows"]:
        ratio = (r.get("latency_ratio") or {}).get(target)
        out[r["name"], r["seed"]] = {
            "skips": sum(op == "skip_connect" for op, _ in parse(r["genotype"]).normal),
            "accuracy_pct": 100 * r["test_accuracy"],
            "ratio": ratio if ratio is not None else r["latency_ms"][target] / darts[r["seed"]],
            "same_window": ratio is not None}
    return out


def main() -> None:
    """Print the side-by-side table and the means over seeds."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("without")
    p.add_argument("with_rule", nargs="+")
    args = p.parse_args()
    old = runs(args.without)
    new: dict[tuple[str, int], dict] = {}
    for path in args.with_rule:
        new.update(runs(path))
    keys = sorted(k for k in new if k in old and k[0] != "DARTS_V2")
    print("| lambda | seed | skips without / with | test acc % without / with | x DARTS_V2 without / with |\n"
          "|---|---|---|---|---|")
    for name, seed in keys:
        a, b = old[name, seed], new[name, seed]
        print(f"| {name} | {seed} | {a['skips']} / {b['skips']} | {a['accuracy_pct']:.2f} / {b['accuracy_pct']:.2f} | "
              f"{a['ratio']:.3f} / {b['ratio']:.3f} |")
    for name in dict.fromkeys(k[0] for k in keys):
        mine = [k for k in keys if k[0] == name]

        def ms(side: dict, field: str) -> str:
            v = [side[k][field] for k in mine]
            return f"{statistics.fmean(v):.3f} +- {statistics.stdev(v) if len(v) > 1 else 0.0:.3f}"

        print(f"\n{name}, {len(mine)} seeds: accuracy {ms(old, 'accuracy_pct')} -> {ms(new, 'accuracy_pct')} %, "
              f"x DARTS_V2 {ms(old, 'ratio')} -> {ms(new, 'ratio')}")
    darts = [(old["DARTS_V2", s]["accuracy_pct"], new["DARTS_V2", s]["accuracy_pct"])
             for _, s in keys if ("DARTS_V2", s) in new]
    print("\nDARTS_V2 trained again with each seed (a check that training repeats): "
          + ", ".join(f"{a:.2f} / {b:.2f}" for a, b in dict.fromkeys(darts)))


if __name__ == "__main__":
    main()
