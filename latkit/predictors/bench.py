"""The predictor benchmark: every predictor at several training sizes on a fixed held-out split of each dataset."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from latkit.datasets.quality import noise_floor
from latkit.datasets.store import load
from latkit.predictors.fitting import DEFAULT_STAT, dataset_xy, held_out_scores, split, training_subset
from latkit.predictors.models import list_predictors, make_predictor, timed_fit

SIZES = (250, 500, 1000, 2000, None)  # None: every training row
THROUGHPUT_ROWS = 100_000


def throughput(predictor: Any, x: np.ndarray) -> float:
    """Batched predictions per second on ``THROUGHPUT_ROWS`` encodings (best of 3)."""
    big = np.resize(x, (THROUGHPUT_ROWS, x.shape[1])).astype(np.float32)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        predictor.predict_ms(big)
        best = min(best, time.perf_counter() - t0)
    return THROUGHPUT_ROWS / best


def run(datasets: Iterable[str | Path], kinds: Iterable[str] | None = None, sizes: Iterable[int | None] = SIZES,
        stat: str = DEFAULT_STAT, seed: int = 0, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """One row per (dataset, predictor, training size) with held-out metrics, fit time and throughput."""
    rows = []
    for path in datasets:
        ds = load(path)
        x, y, index, clean = dataset_xy(ds, stat)
        train, test = split(index, clean)
        x_tr, y_tr = x[train], y[train]
        floor = noise_floor(ds, stat, ds.header.get("protocol", {}).get("min_cpu_share"))
        for kind in kinds or list_predictors():
            for size in sizes:
                if size is not None and size >= len(x_tr):
                    continue
                pick = training_subset(len(x_tr), size, seed)
                predictor = make_predictor(kind)
                _, fit_s = timed_fit(predictor, x_tr[pick], y_tr[pick], seed)
                pred = predictor.predict_ms(x[test])
                row = {"dataset": Path(path).name, "backend": ds.header["backend"], "device": ds.header["device"],
                       "predictor": kind, "train_size": int(len(pick)),
                       **held_out_scores(y[test], pred, clean[test]),
                       "fit_s": fit_s, "predictions_per_s": throughput(predictor, x[test]),
                       "noise_floor_pair_mape_pct": floor["mape_pct"],
                       "noise_floor_single_mape_pct": floor["single_mape_pct"],
                       "noise_floor_pairs": floor["pairs"],
                       "measured_ms": y[test].tolist(), "predicted_ms": pred.tolist(),
                       "undisturbed_mask": clean[test].tolist()}
                rows.append(row)
                log(f"{row['dataset']} {kind:8s} n={row['train_size']:5d}  MAPE {row['mape_pct']:6.2f}% "
                    f"(undisturbed {row['undisturbed']['mape_pct']:6.2f}%)  within10 {row['within10_pct']:5.1f}%  "
                    f"kendall {row['kendall']:.3f}  fit {fit_s:6.1f}s")
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """The results table (one line per dataset, predictor and training size).

    Error columns are on every held-out architecture (``all``) and on the undisturbed ones (``clean``). A
    predictor is scored against one noisy measurement per architecture, so its floor is the single-measurement
    noise (pair MAPE / sqrt 2), which is the column to compare MAPE with; the pair MAPE is shown beside it.
    """
    head = ("| dataset | predictor | train | MAPE % all (n) | MAPE % clean (n) | RMSE ms | within 5% | within 10% | "
            "Spearman | Kendall | fit s | pred/s | noise: single MAPE % | noise: pair MAPE % (pairs) |\n"
            + "|---" * 14 + "|\n")
    lines = [f"| {r['dataset']} | {r['predictor']} | {r['train_size']} | {r['mape_pct']:.2f} ({r['n']}) | "
             f"{r['undisturbed']['mape_pct']:.2f} ({r['undisturbed']['n']}) | {r['rmse_ms']:.3f} | "
             f"{r['within5_pct']:.1f}% | {r['within10_pct']:.1f}% | {r['spearman']:.3f} | {r['kendall']:.3f} | "
             f"{r['fit_s']:.1f} | {r['predictions_per_s']:.2e} | {r['noise_floor_single_mape_pct']:.2f} | "
             f"{r['noise_floor_pair_mape_pct']:.2f} ({r['noise_floor_pairs']}) |" for r in rows]
    return head + "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], out_dir: str | Path) -> list[Path]:
    """Learning curves and predicted-vs-measured scatter plots, one PNG of each per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == name]
        stem = Path(name).stem
        fig, ax = plt.subplots(figsize=(6, 4))
        for kind in dict.fromkeys(r["predictor"] for r in mine):
            pts = sorted((r["train_size"], r["mape_pct"]) for r in mine if r["predictor"] == kind)
            ax.plot(*zip(*pts), marker="o", label=kind)
        ax.axhline(mine[0]["noise_floor_single_mape_pct"], color="grey", ls="--",
                   label="noise floor (single measurement)")
        ax.set(xscale="log", xlabel="training architectures", ylabel="held-out MAPE (%)", title=f"{stem}")
        ax.legend()
        fig.tight_layout()
        written.append(out_dir / f"learning_curve_{stem}.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)
        full = {}
        for r in mine:
            if r["train_size"] >= full.get(r["predictor"], {"train_size": -1})["train_size"]:
                full[r["predictor"]] = r
        fig, axes = plt.subplots(1, len(full), figsize=(4 * len(full), 4), squeeze=False)
        for ax, (kind, r) in zip(axes[0], full.items()):
            m, p = np.asarray(r["measured_ms"]), np.asarray(r["predicted_ms"])
            lo, hi = float(min(m.min(), p.min())), float(max(m.max(), p.max()))
            ax.scatter(m, p, s=6, alpha=0.6)
            ax.plot([lo, hi], [lo, hi], color="black", lw=1)
            ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="grey", alpha=0.2)
            ax.set(xlabel="measured ms", ylabel="predicted ms",
                   title=f"{kind} (n={r['train_size']}): MAPE {r['mape_pct']:.2f}%")
        fig.suptitle(f"{stem}: held-out architectures, band = +-10%")
        fig.tight_layout()
        written.append(out_dir / f"predicted_vs_measured_{stem}.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)
    return written
