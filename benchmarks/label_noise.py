"""How much of a predictor's held-out error is the labels' noise? Two independent measurements of the same architectures.

Usage: python -m benchmarks.label_noise --fit A.parquet --other B.parquet [--model groups] [--fit-on a|b]

A and B are two duet campaigns of one backend, device, shape and campaign seed (a shipped file and its
re-measurement, or a campaign over the held-out indices only: `latkit measure ... --count 3000 --shard 5/5`). A
predictor is fitted on one file's training split (``--fit-on``; default A) and, over the held-out architectures
undisturbed in both, its log errors against each file, e_a = log(a / p) and e_b = log(b / p), and the files' log
difference d = log(a / b) are taken (each duet campaign's milliseconds are its reference's baseline on its day: a
constant in logs, which the variances below ignore). With the three errors independent,
    var(e_a) = M + s_a,   var(e_b) = M + s_b,   var(d) = s_a + s_b,
so the predictor's own error M and each file's label noise s_a, s_b follow without the files' repeat pairs. Figures
are standard deviations of log errors in % (about 1.25 x a MAPE for normal errors), with 95% bootstrap intervals
over architectures; each file's noise from its own undisturbed repeat pairs, sd of log(second / first) / sqrt 2,
is beside.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np

from latkit.datasets.quality import repeat_pairs, with_cpu_share
from latkit.datasets.store import Dataset, load
from latkit.errors import LatkitError
from latkit.predictors import list_predictors
from latkit.predictors.fitting import dataset_xy, holdout, split
from latkit.predictors import make_predictor

BOOTSTRAP = 2000
SAME = ("backend", "device", "config", "seed")


def pair_sd_pct(ds: Dataset) -> tuple[float, int]:
    """A file's single-measurement noise from its undisturbed repeat pairs (both timed loops with the protocol's
    share of a core, as the compared rows): sd of log(second / first) / sqrt 2, in %."""
    t = with_cpu_share(ds.table, ds.header.get("protocol", {}).get("min_cpu_share"))
    y = ds.latency_ms(t, "min_ms")
    d = np.array([math.log(y[b] / y[a]) for a, b in repeat_pairs(t)])
    return (float(100 * d.std(ddof=1) / math.sqrt(2)), len(d)) if len(d) > 1 else (float("nan"), len(d))


def decompose(e_a: np.ndarray, e_b: np.ndarray, d: np.ndarray) -> np.ndarray:
    """(M, s_a, s_b) as standard deviations in % (a negative variance, possible by chance, reads as 0)."""
    va, vb, vd = e_a.var(ddof=1), e_b.var(ddof=1), d.var(ddof=1)
    parts = np.array([va + vb - vd, va - vb + vd, vb - va + vd]) / 2
    return 100 * np.sqrt(np.clip(parts, 0, None))


def compare(path_a: str, path_b: str, model: str = "groups", fit_on: str = "a", seed: int = 0) -> dict[str, Any]:
    """The decomposition over the held-out architectures undisturbed in both files."""
    a, b = load(path_a), load(path_b)
    if not (a.duet and b.duet):
        raise SystemExit("both files must be duet files (normalised latencies)")
    if [a.header.get(k) for k in SAME] != [b.header.get(k) for k in SAME]:
        raise SystemExit("the two files time different backends, devices, shapes or campaign seeds")
    x_a, y_a, i_a, clean_a = dataset_xy(a)
    x_b, y_b, i_b, clean_b = dataset_xy(b)
    x_fit, y_fit, i_fit, clean_fit = (x_a, y_a, i_a, clean_a) if fit_on == "a" else (x_b, y_b, i_b, clean_b)
    train = split(i_fit, clean_fit)[0]
    if train.sum() < 50:
        other = "b" if fit_on == "a" else "a"
        raise SystemExit(f"{int(train.sum())} undisturbed training rows in the file to fit on; fit on the other "
                         f"(--fit-on {other})")
    predictor = make_predictor(model)
    predictor.fit(x_fit[train], y_fit[train], seed)
    row_b = {i: n for n, i in enumerate(i_b)}  # one ok sample row per index
    keep = holdout(i_a) & clean_a & np.array([i in row_b and clean_b[row_b[i]] for i in i_a])
    if keep.sum() < 20:
        raise SystemExit(f"{int(keep.sum())} undisturbed held-out architectures in both files; need at least 20")
    rows_b = np.array([row_b[i] for i in i_a[keep]])
    la, lb, lp = np.log(y_a[keep]), np.log(y_b[rows_b]), np.log(predictor.predict_ms(x_a[keep]))
    e_a, e_b, d = la - lp, lb - lp, la - lb
    rng = np.random.default_rng(seed)
    boot = np.array([decompose(e_a[j], e_b[j], d[j]) for j in rng.integers(0, len(d), (BOOTSTRAP, len(d)))])
    point = decompose(e_a, e_b, d)
    lo, hi = np.percentile(boot, 2.5, axis=0), np.percentile(boot, 97.5, axis=0)
    return {"architectures": int(keep.sum()), "model": model, "fit_on": Path(path_a if fit_on == "a" else path_b).name,
            "vs_a_sd_pct": float(100 * e_a.std(ddof=1)), "vs_b_sd_pct": float(100 * e_b.std(ddof=1)),
            "a_vs_b_sd_pct": float(100 * d.std(ddof=1)),
            "model_sd_pct": [float(point[0]), float(lo[0]), float(hi[0])],
            "a_noise_sd_pct": [float(point[1]), float(lo[1]), float(hi[1])],
            "b_noise_sd_pct": [float(point[2]), float(lo[2]), float(hi[2])],
            "a_pairs": pair_sd_pct(a), "b_pairs": pair_sd_pct(b)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fit", required=True, help="file A (its held-out architectures are compared)")
    p.add_argument("--other", required=True, help="file B: the same architectures measured again")
    p.add_argument("--model", default="groups", choices=list_predictors(), help="predictor kind (default groups)")
    p.add_argument("--fit-on", choices=("a", "b"), default="a", help="which file's training split to fit on")
    args = p.parse_args()
    try:
        c = compare(args.fit, args.other, args.model, args.fit_on)
    except LatkitError as e:
        raise SystemExit(str(e)) from None
    a, b = Path(args.fit).name, Path(args.other).name

    def show(v: list[float]) -> str:
        return f"{v[0]:.2f}% (95% interval {v[1]:.2f} to {v[2]:.2f})"

    print(f"{c['architectures']} held-out architectures undisturbed in both; {args.model} fitted on {c['fit_on']}'s "
          f"training split\nsd of log error: predictor vs A {c['vs_a_sd_pct']:.2f}%, vs B {c['vs_b_sd_pct']:.2f}%, "
          f"A vs B {c['a_vs_b_sd_pct']:.2f}%\npredictor's own error {show(c['model_sd_pct'])}\n"
          f"A's label noise {show(c['a_noise_sd_pct'])}; from its {c['a_pairs'][1]} repeat pairs "
          f"{c['a_pairs'][0]:.2f}% ({a})\nB's label noise {show(c['b_noise_sd_pct'])}; from its "
          f"{c['b_pairs'][1]} repeat pairs {c['b_pairs'][0]:.2f}% ({b})")


if __name__ == "__main__":
    main()
