"""How much of the host's change between two measurements of one architecture survives the duet's normalisation.

Usage: python benchmarks/duet_leak.py DATASET.parquet [...]
For each re-measured pair of a duet file: the log-change of the raw minimum (the host's state moved it) and of the
normalised one (what the ratio to DARTS_V2 kept). The least-squares slope of normalised on raw is the share of the
host's change that leaks through: 0 means the reference cancels it, 1 that it does not cancel at all.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from datasets.store import load  # noqa: E402


def leak(path: str) -> dict[str, float]:
    """Pairs, leak slope, correlation and the two single-measurement noises (%) of one duet dataset."""
    ds = load(path)
    if not ds.duet:
        raise SystemExit(f"{path}: not a duet dataset (nothing is normalised)")
    t = ds.table
    kind, index = t.column("kind").to_pylist(), t.column("index").to_pylist()
    ok = t.column("status").to_pylist()
    norm, raw = ds.latency_ms(t, "min_ms", True), ds.latency_ms(t, "min_ms", False)
    first: dict[int, int] = {}
    for n, (k, i, s) in enumerate(zip(kind, index, ok)):
        if k == "sample" and s == "ok":
            first.setdefault(i, n)
    pairs = [(first[i], n) for n, (k, i, s) in enumerate(zip(kind, index, ok))
             if k == "repeat" and s == "ok" and i in first]
    dn = np.array([np.log(norm[b] / norm[a]) for a, b in pairs])
    dr = np.array([np.log(raw[b] / raw[a]) for a, b in pairs])
    return {"pairs": len(pairs), "slope": float(dn @ dr / (dr @ dr)), "corr": float(np.corrcoef(dn, dr)[0, 1]),
            "raw_pct": float(100 * np.mean(np.abs(np.expm1(dr))) / np.sqrt(2)),
            "norm_pct": float(100 * np.mean(np.abs(np.expm1(dn))) / np.sqrt(2))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("datasets", nargs="+")
    args = p.parse_args()
    print("| dataset | pairs | raw noise % | normalised noise % | leak (slope) | correlation |\n|---|---|---|---|---|---|")
    for path in args.datasets:
        r = leak(path)
        print(f"| {Path(path).stem} | {r['pairs']} | {r['raw_pct']:.2f} | {r['norm_pct']:.2f} | {r['slope']:.2f} "
              f"| {r['corr']:.2f} |")


if __name__ == "__main__":
    main()
