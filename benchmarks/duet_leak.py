"""How much of the host's change between two measurements of one architecture survives the duet's normalisation.

Usage: python -m benchmarks.duet_leak DATASET.parquet [...]
For each re-measured pair of a duet file (the first ok sample of an index against its ok repeats, as the noise
floor pairs them): dr, the log-change of the raw minimum (the host's state moved it), and dn, that of the normalised
one (what the ratio to DARTS_V2 kept). The least-squares slope of dn on dr through the origin is above 0 even where
the reference cancels the host exactly, since the architecture's own noise is in both: with dn = e_a - e_r and
equally noisy architecture and reference, that no-leak slope is (dn.dn / 2) / (dr.dr). The excess of the slope over
it estimates the share k of the host's change the ratio keeps (it reads k (1 - k / 2), so it is for small leaks;
negative: the ratio over-corrects), given with a 95% bootstrap interval over pairs.
"""
from __future__ import annotations

import argparse

import numpy as np

from latkit.datasets.quality import repeat_pairs
from latkit.datasets.store import Dataset, load

BOOTSTRAP = 2000


def pair_changes(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(dn, dr): the log-changes of the normalised and of the raw minimum over the dataset's re-measured pairs."""
    t = ds.table
    norm, raw = ds.latency_ms(t, "min_ms", True), ds.latency_ms(t, "min_ms", False)
    pairs = repeat_pairs(t)
    return (np.array([np.log(norm[b] / norm[a]) for a, b in pairs]),
            np.array([np.log(raw[b] / raw[a]) for a, b in pairs]))


def _excess(dn: np.ndarray, dr: np.ndarray) -> float:
    """Slope of dn on dr through the origin, less the slope the architecture's own noise gives without a leak."""
    return float((dn @ dr - dn @ dn / 2) / (dr @ dr))


def leak(ds: Dataset, seed: int = 0) -> dict[str, float]:
    """Pairs, slope, no-leak slope, leak (their difference) and its 95% bootstrap interval, and both noises (%)."""
    dn, dr = pair_changes(ds)
    if len(dn) < 2:
        raise ValueError(f"{ds.path}: {len(dn)} re-measured pair(s); the leak needs at least 2")
    rng = np.random.default_rng(seed)
    boot = [_excess(dn[j], dr[j]) for j in rng.integers(0, len(dn), (BOOTSTRAP, len(dn)))]
    return {"pairs": len(dn), "slope": float(dn @ dr / (dr @ dr)), "no_leak": float(dn @ dn / 2 / (dr @ dr)),
            "leak": _excess(dn, dr), "leak_lo": float(np.percentile(boot, 2.5)),
            "leak_hi": float(np.percentile(boot, 97.5)),
            "raw_pct": float(100 * np.mean(np.abs(np.expm1(dr))) / np.sqrt(2)),
            "norm_pct": float(100 * np.mean(np.abs(np.expm1(dn))) / np.sqrt(2))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("datasets", nargs="+", help="duet dataset files (.parquet)")
    args = p.parse_args()
    loaded = [load(path) for path in args.datasets]
    for ds in loaded:
        if not ds.duet:
            raise SystemExit(f"{ds.path}: not a duet dataset (nothing is normalised)")
    rows = []
    for ds in loaded:
        try:
            rows.append((ds, leak(ds)))
        except ValueError as e:
            raise SystemExit(str(e)) from None
    print("| dataset | pairs | raw noise % | normalised noise % | slope | no-leak slope | leak (95% interval) |\n"
          "|---|---|---|---|---|---|---|")
    for ds, r in rows:
        print(f"| {ds.path.stem} | {r['pairs']} | {r['raw_pct']:.2f} | {r['norm_pct']:.2f} | {r['slope']:.2f} "
              f"| {r['no_leak']:.2f} | {r['leak']:.2f} ({r['leak_lo']:.2f} to {r['leak_hi']:.2f}) |")


if __name__ == "__main__":
    main()
