"""Does a duet campaign's normalised latency drift with the age of the measuring process?

Usage: python -m benchmarks.process_age DATASET [...]

A duet campaign prepares its reference once, when its process starts, and every architecture afresh beside it. Per
duet file:
- repeat pairs (undisturbed, both in one run): a repeat is measured later in the process's life than the sample it
  repeats; the mean of log(repeat / first) in % (with its standard error) is the drift a pair sees;
- DARTS_V2 beside itself: its normalised timings in the first EARLY_MIN minutes of each run against the later ones,
  and its CV over all timings and from minute EARLY_MIN on;
- minutes since the row's run started, as bins beside the 28 op-group costs in one ridge fit on the training split:
  each bin's offset in % of the median latency (against the rows' mean), and the held-out MAPE (undisturbed rows)
  without and with the bins: what the drift costs a predictor (for a file with run start times and at least 100
  training rows).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np

from latkit.datasets.quality import repeat_pairs, with_cpu_share
from latkit.datasets.store import load
from latkit.errors import LatkitError
from latkit.predictors.fitting import dataset_xy, metrics, split
from latkit.predictors.models import ridge
from latkit.space import op_groups

from benchmarks.common import minutes_since_start

AGE_BINS_MIN = (0, 2, 4, 6, 10, 15, 25, 40, 60, math.inf)
EARLY_MIN = 10
ALPHA = 1e-5  # a guard against singular designs: 37 terms against thousands of rows


def cv_pct(values: np.ndarray) -> float:
    """Coefficient of variation in % (NaN for fewer than 2 values)."""
    return float(100 * values.std(ddof=1) / values.mean()) if len(values) > 1 else math.nan


def age(path: str) -> dict[str, Any]:
    """The three views of one duet file."""
    ds = load(path)
    if not ds.duet:
        raise SystemExit(f"{path}: a solo file has no reference to drift against")
    t = with_cpu_share(ds.table, ds.header.get("protocol", {}).get("min_cpu_share"))
    y, run = ds.latency_ms(t, "min_ms"), t.column("run_id").to_pylist()
    d = np.array([math.log(y[b] / y[a]) for a, b in repeat_pairs(t) if run[a] == run[b]])  # one process's life
    kind, status = t.column("kind").to_pylist(), t.column("status").to_pylist()
    self_rows = [n for n, (k, st) in enumerate(zip(kind, status)) if k == "reference" and st == "ok"]
    self_age, self_ms = minutes_since_start(ds, t.take(self_rows)), y[self_rows]
    early, late = self_ms[self_age < EARLY_MIN], self_ms[self_age >= EARLY_MIN]
    out: dict[str, Any] = {
        "dataset": Path(path).name, "pairs": len(d), "pair_drift_pct": float(100 * d.mean()) if len(d) else math.nan,
        "pair_drift_se_pct": float(100 * d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else math.nan,
        "self_early_late_pct": float(100 * (early.mean() / late.mean() - 1)) if len(early) and len(late) else math.nan,
        "self_early": len(early), "self_late": len(late), "self_cv_pct": cv_pct(self_ms),
        "self_cv_late_pct": cv_pct(late)}
    minutes = minutes_since_start(ds, ds.samples(ok_only=True))  # the rows dataset_xy returns, in its order
    x, lat, index, clean = dataset_xy(ds)
    train, test = split(index, clean)
    if np.isnan(minutes).any() or train.sum() < 100:  # no run start times, or too few rows to fit on
        return out
    bins = np.stack([(minutes >= lo) & (minutes < hi) for lo, hi in zip(AGE_BINS_MIN[:-1], AGE_BINS_MIN[1:])], 1)
    test &= clean
    groups = x @ op_groups()
    for name, f in (("mape_pct", groups), ("mape_with_age_pct", np.concatenate([groups, bins], 1))):
        w, b = ridge(f[train], lat[train], ALPHA)
        out[name] = metrics(lat[test], f[test] @ w + b)["mape_pct"]
    offsets = w[-bins.shape[1]:]
    offsets = offsets - (bins[train] @ offsets).mean()
    out["offsets_pct"] = [float(100 * o / np.median(lat)) if bins[train, k].any() else math.nan
                          for k, o in enumerate(offsets)]
    return out


def markdown(rows: list[dict[str, Any]]) -> str:
    """One table row per dataset."""
    names = [f"{lo}-{hi}" if hi < math.inf else f"{lo}+" for lo, hi in zip(AGE_BINS_MIN[:-1], AGE_BINS_MIN[1:])]
    lines = ["| dataset | repeat - first within a run, mean % (se, pairs) | DARTS_V2 beside itself: first "
             f"{EARLY_MIN} min vs later, % (timings) | its CV %, all / from minute {EARLY_MIN} | offset by minutes "
             f"since the run started ({', '.join(names)}), % of the median latency | held-out MAPE %, groups / "
             "with the age bins |", "|---" * 6 + "|"]

    def pct(v: float, sign: str = "+") -> str:
        return "-" if math.isnan(v) else f"{v:{sign}.2f}"

    for r in rows:
        offsets = " / ".join(pct(o) for o in r.get("offsets_pct", [])) or "-"
        fits = f"{r['mape_pct']:.3f} / {r['mape_with_age_pct']:.3f}" if "mape_pct" in r else "-"
        lines.append(f"| {r['dataset']} | {pct(r['pair_drift_pct'])} ({pct(r['pair_drift_se_pct'], '')}, "
                     f"{r['pairs']}) | {pct(r['self_early_late_pct'])} ({r['self_early']}, {r['self_late']}) | "
                     f"{pct(r['self_cv_pct'], '')} / {pct(r['self_cv_late_pct'], '')} | {offsets} | {fits} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("datasets", nargs="+")
    args = p.parse_args()
    try:
        print(markdown([age(path) for path in args.datasets]))
    except LatkitError as e:
        raise SystemExit(str(e)) from None


if __name__ == "__main__":
    main()
