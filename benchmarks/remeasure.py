"""Measure the genotypes of searches and sweeps again, interleaved, on a quiet machine.

Usage: python -m benchmarks.remeasure FILE... [--backends onnxruntime,torch] [--rounds 3] [--plot PNG] [--json OUT]

FILE is a sweep.json (every row's genotype, with its test accuracy) or a search's result.json. Each round measures
every genotype once on every backend through latkit's own path (build, prepare, the default protocol) in the same
order, so slow changes of the machine hit all alike; the table gives the median over rounds of each genotype's
min_ms, its spread (max - min over rounds, % of the median) and the ratio to DARTS_V2 measured in the same rounds.
``--json`` writes the same per genotype (with its file, the sweep's form, lambda name and seed, and every round's
min_ms) for benchmarks/loss_forms.py.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from latkit.backends.timing import MeasureProtocol
from latkit.backends.registry import get_backend
from latkit.measure import time_genotype
from latkit.network import NetConfig
from latkit.space import PUBLISHED, parse


def candidates(paths: list[str]) -> list[dict]:
    """(name, genotype, test accuracy or None, deployment config) of every genotype in the files, DARTS_V2 first."""
    out = [{"name": "DARTS_V2", "genotype": str(PUBLISHED["DARTS_V2"]), "test_accuracy": None, "config": None,
            "source": {}}]
    for path in paths:
        doc = json.loads(Path(path).read_text())
        if "rows" in doc:  # a sweep
            seeded = len(doc.get("seeds", [])) > 1  # a seeded sweep: a row per (lambda, seed)
            for row in doc["rows"]:
                if row["name"] != "DARTS_V2":
                    name = f"{Path(path).parent.name}:{row['name']}" + (f"/seed{row['seed']}" if seeded else "")
                    out.append({"name": name, "genotype": row["genotype"], "test_accuracy": row["test_accuracy"],
                                "config": doc["deployment_config"],
                                "source": {"file": str(path), "form": doc.get("form", "additive"),
                                           "target_ms": doc.get("target_ms"), "setting": row["name"],
                                           "seed": row.get("seed")}})
                elif not seeded:
                    out[0]["test_accuracy"] = row["test_accuracy"]
        else:  # a search result
            out.append({"name": f"{Path(path).parent.name}", "genotype": doc["genotype"], "test_accuracy": None,
                        "config": doc["deployment_config"], "source": {"file": str(path)}})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--backends", default="onnxruntime,torch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--plot", help="accuracy against the first backend's latency (sweep genotypes), PNG")
    parser.add_argument("--json", help="write each genotype's medians, rounds and source here")
    args = parser.parse_args()
    rows = candidates(args.files)
    config = NetConfig(**{k: v for k, v in (rows[-1]["config"] or {}).items()})
    backends = [get_backend(name) for name in args.backends.split(",")]
    times: dict[tuple[str, str], list[float]] = {}
    for round_ in range(args.rounds):
        for row in rows:
            for backend in backends:
                r = time_genotype(backend, parse(row["genotype"]), config, MeasureProtocol())
                if r["status"] != "ok":
                    raise SystemExit(f"{row['name']} on {backend.name}: {r['error']}")
                times.setdefault((row["name"], backend.name), []).append(r["min_ms"])
        print(f"round {round_ + 1}/{args.rounds} done", flush=True)
    names = [b.name for b in backends]
    print("\n| architecture | test acc % | " + " | ".join(f"{n} min ms (spread) | {n} / DARTS_V2" for n in names)
          + " |\n" + "|---" * (2 + 2 * len(names)) + "|")
    medians = {k: statistics.median(v) for k, v in times.items()}
    for row in rows:
        acc = "" if row["test_accuracy"] is None else f"{100 * row['test_accuracy']:.2f}"
        cells = []
        for n in names:
            v = times[(row["name"], n)]
            m = medians[(row["name"], n)]
            cells.append(f"{m:.3f} ({100 * (max(v) - min(v)) / m:.1f}%) | {m / medians[('DARTS_V2', n)]:.3f}")
        print(f"| {row['name']} | {acc} | " + " | ".join(cells) + " |")
    if args.json:
        doc = {"backends": names, "rounds": args.rounds, "genotypes": [
            {**{k: row[k] for k in ("name", "genotype", "test_accuracy", "source")},
             "min_ms_rounds": {n: times[(row["name"], n)] for n in names},
             "min_ms": {n: medians[(row["name"], n)] for n in names},
             "ratio_to_darts_v2": {n: medians[(row["name"], n)] / medians[("DARTS_V2", n)] for n in names}}
            for row in rows]}
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.json}")
    if args.plot:
        from latkit.search.pipeline import pareto_plot

        points = [{"name": r["name"].split(":")[-1], "test_accuracy": r["test_accuracy"],
                   "measured_ms": medians[(r["name"], names[0])]} for r in rows if r["test_accuracy"] is not None]
        print(f"\nwrote {pareto_plot(points, Path(args.plot), names[0])}")


if __name__ == "__main__":
    main()
