"""Is the predictors' error beyond the noise the duet's own? Held-out architectures timed alone against the duet.

Usage: python -m benchmarks.duet_vs_solo --duet DUET.parquet --solo SOLO.parquet [--model groups]
SOLO holds some of DUET's held-out architectures (index % 5 == 4) timed alone with the same backend and shape, e.g.
`latkit measure --backend onnxruntime --solo --count 1000 --shard 5/5 --pin-cpu 0 --out runs/solo_heldout.parquet`.
A predictor is fitted on DUET's training split. Over the undisturbed held-out architectures in both files: d =
log(solo / duet), minus what timing beside DARTS_V2 does to each architecture (up to a constant), plus both files'
noise, and r = log(duet / predicted), the predictor's residual. The two share the duet measurement with opposite
signs, so its noise alone makes them anti-correlated; contention with DARTS_V2 that the predictor misses
(repeatable, so the noise floor cannot see it) makes them more so, and the predictor (after one scale) then misses
the solo times by little more than their noise.
"""
from __future__ import annotations

import argparse

import numpy as np

from latkit.datasets.quality import noise_floor
from latkit.datasets.store import load
from latkit.errors import LatkitError
from latkit.predictors import list_predictors
from latkit.predictors.fitting import dataset_xy, fit_dataset, holdout

BOOTSTRAP = 2000


def compare(duet_path: str, solo_path: str, model: str = "groups", seed: int = 0) -> dict[str, float]:
    """The figures of the comparison (MAPEs in %, the correlation of r and d with its 95% bootstrap interval)."""
    duet, solo = load(duet_path), load(solo_path)
    if not duet.duet or solo.duet:
        raise SystemExit(f"--duet must be a duet file and --solo a solo one ({duet_path}, {solo_path})")
    same = ("backend", "device", "config", "seed")
    if [duet.header.get(k) for k in same] != [solo.header.get(k) for k in same]:
        raise SystemExit("the two files time different backends, devices, shapes or campaign seeds")
    predictor, held_out = fit_dataset(duet_path, model, seed=seed)
    _, y_duet, i_duet, duet_clean = dataset_xy(duet)
    x_solo, y_solo, i_solo, solo_clean = dataset_xy(solo)
    first = {i: n for n, i in reversed(list(enumerate(i_duet)))}  # each index's first successful sample
    keep = np.array([i in first and duet_clean[first[i]] for i in i_solo]) & holdout(i_solo) & solo_clean
    if keep.sum() < 10:
        raise SystemExit(f"{solo_path}: {int(keep.sum())} undisturbed held-out architectures shared with the duet "
                         "file; the comparison needs at least 10")
    duet_ms = np.array([y_duet[first[i]] for i in i_solo[keep]])
    solo_ms, pred_ms = y_solo[keep], predictor.predict_ms(x_solo[keep])
    d, r = np.log(solo_ms / duet_ms), np.log(duet_ms / pred_ms)
    scaled = pred_ms * np.median(solo_ms / pred_ms)
    rng = np.random.default_rng(seed)
    boot = [np.corrcoef(r[j], d[j])[0, 1] for j in rng.integers(0, len(d), (BOOTSTRAP, len(d)))]
    return {"architectures": int(keep.sum()), "vs_duet_pct": float(100 * np.mean(np.abs(pred_ms / duet_ms - 1))),
            "vs_solo_pct": float(100 * np.mean(np.abs(scaled / solo_ms - 1))),
            "held_out_pct": held_out["undisturbed"]["mape_pct"],
            "duet_noise_pct": noise_floor(duet, "min_ms")["single_mape_pct"],
            "solo_noise_pct": noise_floor(solo, "min_ms")["single_mape_pct"],
            "solo_duet_spread_pct": float(100 * np.mean(np.abs(np.expm1(d - np.median(d))))),
            "corr": float(np.corrcoef(r, d)[0, 1]), "corr_lo": float(np.percentile(boot, 2.5)),
            "corr_hi": float(np.percentile(boot, 97.5))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duet", required=True, help="the duet dataset the predictor is fitted on")
    p.add_argument("--solo", required=True, help="held-out architectures of it, timed alone")
    p.add_argument("--model", default="groups", choices=list_predictors(), help="predictor kind (default groups)")
    args = p.parse_args()
    try:
        c = compare(args.duet, args.solo, args.model)
    except LatkitError as e:
        raise SystemExit(str(e)) from None
    print(f"{c['architectures']} held-out architectures in both files; {args.model} fitted on the duet file's "
          f"training split (held-out MAPE {c['held_out_pct']:.2f}%)\n"
          f"predictor against the duet times {c['vs_duet_pct']:.2f}% (duet noise {c['duet_noise_pct']:.2f}%); "
          f"against the solo times, scaled once, {c['vs_solo_pct']:.2f}% (solo noise {c['solo_noise_pct']:.2f}%)\n"
          f"solo/duet spread over architectures {c['solo_duet_spread_pct']:.2f}%; correlation of the predictor's "
          f"residual with log(solo/duet) {c['corr']:.2f} (95% interval {c['corr_lo']:.2f} to {c['corr_hi']:.2f})")


if __name__ == "__main__":
    main()
