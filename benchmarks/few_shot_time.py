"""Time from nothing to a predictor for a new backend: measure N architectures, then a transfer fit.

Usage: python -m benchmarks.few_shot_time --backend openvino --prior onnxruntime [--count 20] [--pin-cpu 0]

Runs exactly what a user runs (``latkit measure --count N --select random --seed 7`` and ``latkit fit --prior``),
in-process, and reports the wall time of each step; for backends that compile, the compile time inside the measuring
step (the rows' prepare_ms) is reported apart. Campaign seed 7 draws architectures the shipped datasets (seed 0) do
not contain, so when the backend has a shipped dataset the new predictor is scored on that dataset's held-out rows:
as predicted, and (both campaigns being duets) rescaled by the ratio of the two campaigns' reference baselines, so
that a host running a few percent faster or slower on one day than the other does not count as prediction error.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from latkit.cli import main
from latkit.datasets import shipped
from latkit.datasets.store import load
from latkit.predictors.base import load_dir
from latkit.predictors.fitting import dataset_xy, metrics, split


def run(backend: str, prior: str, count: int, pin_cpu: int | None, work: Path) -> dict:
    """Measure ``count`` architectures on ``backend``, fit from ``prior``; wall times and held-out scores."""
    data, out = work / "new.parquet", work / "predictor"
    pin = ["--pin-cpu", str(pin_cpu)] if pin_cpu is not None else []
    t0 = time.perf_counter()
    rc = main(["measure", "--backend", backend, "--count", str(count), "--select", "random", "--seed", "7",
               "--repeat-every", "0", "--reference-every", "0", "--out", str(data), *pin])
    t1 = time.perf_counter()
    rc = rc or main(["fit", "--dataset", str(data), "--prior", prior, "--out", str(out)])
    t2 = time.perf_counter()
    if rc:
        raise SystemExit(f"a step failed (exit {rc})")
    rows = load(data).samples(ok_only=True)
    doc = {"backend": backend, "prior": prior, "count": count, "measure_s": t1 - t0, "fit_s": t2 - t1,
           "total_s": t2 - t0, "prepare_s": float(np.sum(rows.column("prepare_ms").to_numpy()) / 1e3),
           "timed_s": float(np.sum(rows.column("timing_ms").to_numpy()) / 1e3)}
    reference = [p for p in shipped() if load(p).header["backend"] == backend]
    if reference:
        ds = load(reference[0])
        x, y, index, clean = dataset_xy(ds)
        test = split(index, clean)[1]
        predicted = load_dir(out).predict_ms(x[test])
        doc["scored_on"] = f"{reference[0].name} held-out ({int(test.sum())} architectures)"
        doc["held_out"] = metrics(y[test], predicted)
        new = load(data)
        if ds.duet and new.duet:
            # Each duet campaign's milliseconds are its reference's baseline that day; compare in one unit.
            doc["baseline_ms"] = {"shipped": ds.baseline_ms(), "new": new.baseline_ms()}
            unit = doc["baseline_ms"]["shipped"] / doc["baseline_ms"]["new"]
            doc["held_out_one_unit"] = metrics(y[test], predicted * unit)
    return doc


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="openvino")
    p.add_argument("--prior", default="onnxruntime", help="backend name or predictor directory")
    p.add_argument("--count", type=int, default=20)
    p.add_argument("--pin-cpu", type=int)
    return p.parse_args()


if __name__ == "__main__":
    args = parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args.backend, args.prior, args.count, args.pin_cpu, Path(tmp))
    print(json.dumps(result, indent=2))
    held = result.get("held_out")
    print(f"{args.backend} from {args.prior}, N={args.count}: measure {result['measure_s']:.1f} s (prepare/compile "
          f"{result['prepare_s']:.1f} s, timed loops {result['timed_s']:.1f} s), fit {result['fit_s']:.1f} s, total "
          f"{result['total_s']:.1f} s" + (f"; {result['scored_on']}: MAPE {held['mape_pct']:.2f}%, Spearman "
                                            f"{held['spearman']:.3f}" if held else ""))
    if "held_out_one_unit" in result:
        base = result["baseline_ms"]
        print(f"the new campaign's reference baseline {base['new']:.3f} ms against the shipped dataset's "
              f"{base['shipped']:.3f} ms ({100 * (base['new'] / base['shipped'] - 1):+.1f}%, the host's speed on "
              f"each day); in the shipped dataset's unit: MAPE {result['held_out_one_unit']['mape_pct']:.2f}%")
