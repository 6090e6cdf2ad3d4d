"""What the backends say: how latency ranks carry across backends, and whether each backend is additive in its ops.

Usage: python -m benchmarks.cross_backend [--dataset F ...] [--out benchmarks/cross_backend]

Over the architectures that every pair of datasets shares (same seed and index, successful, undisturbed in both):
Spearman and Kendall rank correlation of min_ms, the overlap of the fastest 5%, and the median latency ratio, with
one scatter plot per pair. Additivity per dataset: the additive table's and the MLP's held-out MAPE (the fixed
split of `latkit bench predictors`, undisturbed rows) against the single-measurement noise (pair MAPE / sqrt 2).
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
from scipy import stats as sstats

from latkit.datasets import shipped
from latkit.datasets.quality import noise_floor
from latkit.datasets.store import load
from latkit.predictors.fitting import DEFAULT_STAT, dataset_xy, held_out_scores, split
from latkit.predictors import make_predictor


def latencies(path: Path) -> tuple[str, dict[int, float]]:
    """(label: the file's stem, which names backend, device and shape; sample index -> min_ms) of a dataset's
    successful, undisturbed samples."""
    ds = load(path)
    _, y, index, clean = dataset_xy(ds, DEFAULT_STAT)
    return path.stem, dict(zip(index[clean].tolist(), y[clean].tolist()))


def pair_row(a: dict[int, float], b: dict[int, float]) -> dict[str, float]:
    shared = sorted(set(a) & set(b))
    x, y = np.array([a[i] for i in shared]), np.array([b[i] for i in shared])
    k = max(1, len(shared) // 20)
    top_x, top_y = set(np.argsort(x)[:k]), set(np.argsort(y)[:k])
    return {"shared": len(shared), "spearman": float(sstats.spearmanr(x, y).statistic),
            "kendall": float(sstats.kendalltau(x, y).statistic), "top5_overlap_pct": 100 * len(top_x & top_y) / k,
            "median_ratio": float(np.median(y / x)), "x": x, "y": y}


def additivity(path: Path) -> dict[str, float]:
    ds = load(path)
    x, y, index, clean = dataset_xy(ds, DEFAULT_STAT)
    train, test = split(index, clean)
    test &= clean
    scores = {}
    for kind in ("additive", "mlp"):
        predictor = make_predictor(kind)
        predictor.fit(x[train], y[train], 0)
        scores[kind] = held_out_scores(y[test], predictor.predict_ms(x[test]), clean[test])["mape_pct"]
    floor = noise_floor(ds, DEFAULT_STAT, ds.header.get("protocol", {}).get("min_cpu_share"))
    return {**scores, "single_noise_pct": floor["single_mape_pct"], "pairs": floor["pairs"], "n_test": int(test.sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", action="append", help="dataset file (repeatable; default: the shipped ones)")
    parser.add_argument("--out", default="benchmarks/cross_backend")
    args = parser.parse_args()
    paths = [Path(p) for p in args.dataset] if args.dataset else shipped()
    data = dict(latencies(p) for p in paths)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = list(itertools.combinations(data, 2))
    print("| backend A | backend B | shared | Spearman | Kendall | fastest 5% overlap | median B/A |\n"
          "|---|---|---|---|---|---|---|")
    cols = min(5, len(pairs))
    rows = -(-len(pairs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows), squeeze=False)
    for ax in axes.flat[len(pairs):]:
        ax.axis("off")
    for ax, (a, b) in zip(axes.flat, pairs):
        r = pair_row(data[a], data[b])
        print(f"| {a} | {b} | {r['shared']} | {r['spearman']:.3f} | {r['kendall']:.3f} | "
              f"{r['top5_overlap_pct']:.0f}% | {r['median_ratio']:.2f} |")
        ax.scatter(r["x"], r["y"], s=4, alpha=0.5)
        ax.set(xlabel=f"{a} min ms", ylabel=f"{b} min ms", title=f"Spearman {r['spearman']:.2f} ({r['shared']})")
        ax.xaxis.label.set_size(7)
        ax.yaxis.label.set_size(7)
    fig.tight_layout()
    fig.savefig(out / "pairs.png", dpi=110)
    plt.close(fig)

    print("\n| dataset | additive MAPE % | MLP MAPE % | single-measurement noise % (pairs) | additive / noise | "
          "MLP gain (points) |\n|---|---|---|---|---|---|")
    for path in paths:
        r = additivity(path)
        print(f"| {path.name} | {r['additive']:.2f} | {r['mlp']:.2f} | {r['single_noise_pct']:.2f} ({r['pairs']}) | "
              f"{r['additive'] / r['single_noise_pct']:.2f} | {r['additive'] - r['mlp']:.2f} |")
    print(f"\nwrote {out / 'pairs.png'}")


if __name__ == "__main__":
    main()
