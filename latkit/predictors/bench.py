"""The predictor benchmark: every predictor at several training sizes on a fixed held-out split of each dataset."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from latkit.datasets.quality import noise_floor
from latkit.datasets.store import load
from latkit.predictors.fitting import (DEFAULT_STAT, coverage_pct, cross_conformal, dataset_xy, held_out_scores,
                                      metrics, scored, split, training_subset)
from latkit.predictors.base import KINDS, PredictorError, list_predictors, make_predictor
from latkit.predictors.recommend import AUTO, resolve
from latkit.predictors.models import timed_fit
from latkit.predictors.transfer import MIN_ROWS

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
        stat: str = DEFAULT_STAT, seeds: Iterable[int] = (0,),
        log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """One row per (dataset, predictor, training size; None: all, fit seed) with held-out metrics, fit time and
    throughput. A seed picks the training subset and the fit's own randomness, so several show the fit's spread."""
    sizes, kinds, seeds = list(sizes), None if kinds is None else list(kinds), list(seeds)
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise PredictorError(f"fit seeds must be distinct integers >= 0, got {seeds}")
    if any(size is not None and size < 2 for size in sizes):
        raise PredictorError(f"training sizes must be >= 2 (or all), got {sizes}")
    unknown = sorted(set(kinds or []) - set(list_predictors()))
    if unknown:
        raise PredictorError(f"unknown predictor(s) {', '.join(unknown)} (known: {', '.join(list_predictors())})")
    rows = []
    for path in datasets:
        ds = load(path)
        x, y, index, clean = dataset_xy(ds, stat)
        train, test = split(index, clean)
        x_tr, y_tr = x[train], y[train]
        floor = noise_floor(ds, stat, ds.header.get("protocol", {}).get("min_cpu_share"))
        for kind, size, seed in ((k, n, s) for k in kinds or list_predictors() for n in sizes for s in seeds):
            if size is not None and size >= len(x_tr):
                continue
            pick = training_subset(len(x_tr), size, seed)
            predictor = make_predictor(kind)
            _, fit_s = timed_fit(predictor, x_tr[pick], y_tr[pick], seed)
            pred = predictor.predict_ms(x[test])
            if size is None:  # the full-data predictor, as shipped: with its calibrated interval
                predictor.meta["interval"] = cross_conformal(kind, {}, x_tr[pick], y_tr[pick], seed)
                scores = scored(predictor, x[test], y[test], clean[test])
            else:
                scores = held_out_scores(y[test], pred, clean[test])
            row = {"dataset": Path(path).name, "backend": ds.header["backend"], "device": ds.header["device"],
                   "predictor": kind, "train_size": int(len(pick)), "seed": seed, **scores,
                   "fit_s": fit_s, "predictions_per_s": throughput(predictor, x[test]),
                   "noise_floor_pair_mape_pct": floor["mape_pct"],
                   "noise_floor_single_mape_pct": floor["single_mape_pct"],
                   "noise_floor_pairs": floor["pairs"],
                   "measured_ms": y[test].tolist(), "predicted_ms": pred.tolist(),
                   "undisturbed_mask": clean[test].tolist()}
            rows.append(row)
            log(f"{row['dataset']} {kind:8s} n={row['train_size']:5d} seed {seed}  MAPE {row['mape_pct']:6.2f}% "
                f"(undisturbed {row['undisturbed']['mape_pct']:6.2f}%)  within10 {row['within10_pct']:5.1f}%  "
                f"kendall {row['kendall']:.3f}  fit {fit_s:6.1f}s")
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """The results table (one line per dataset, predictor, training size and fit seed).

    Error columns are on every held-out architecture (``all``) and on the undisturbed ones (``clean``). A
    predictor is scored against one noisy measurement per architecture, so its floor is the single-measurement
    noise (pair MAPE / sqrt 2), which is the column to compare MAPE with; the pair MAPE is shown beside it.
    """
    head = ("| dataset | predictor | train | seed | MAPE % all (n) | MAPE % clean (n) | RMSE ms | within 5% | "
            "within 10% | Spearman | Kendall | 90% interval coverage all / clean | fit s | pred/s | noise: single "
            "MAPE % | noise: pair MAPE % (pairs) |\n" + "|---" * 16 + "|\n")
    lines = [f"| {r['dataset']} | {r['predictor']} | {r['train_size']} | {r.get('seed', 0)} | "
             f"{r['mape_pct']:.2f} ({r['n']}) | "
             f"{r['undisturbed']['mape_pct']:.2f} ({r['undisturbed']['n']}) | {r['rmse_ms']:.3f} | "
             f"{r['within5_pct']:.1f}% | {r['within10_pct']:.1f}% | {r['spearman']:.3f} | {r['kendall']:.3f} | "
             f"{_coverage(r)} | {r['fit_s']:.1f} | {r['predictions_per_s']:.2e} | {r['noise_floor_single_mape_pct']:.2f} | "
             f"{r['noise_floor_pair_mape_pct']:.2f} ({r['noise_floor_pairs']}) |" for r in rows]
    return head + "\n".join(lines) + "\n" + seeds_markdown(rows)


def seeds_markdown(rows: list[dict[str, Any]]) -> str:
    """With several fit seeds: per dataset, training size and predictor, the mean +- std over seeds of the clean
    held-out MAPE and Kendall's tau, beside the noise floor ('' with one seed)."""
    if len({r.get("seed", 0) for r in rows}) < 2:
        return ""
    out = ["", "Mean +- standard deviation over fit seeds (undisturbed held-out rows):", "",
           "| dataset | train | predictor | seeds | MAPE % clean | Kendall | noise: single MAPE % |", "|---" * 7 + "|"]
    for key in dict.fromkeys((r["dataset"], r["train_size"], r["predictor"]) for r in rows):
        mine = [r for r in rows if (r["dataset"], r["train_size"], r["predictor"]) == key]
        mape = np.array([r["undisturbed"]["mape_pct"] for r in mine])
        tau = np.array([r["undisturbed"]["kendall"] for r in mine])
        spread = mape.std(ddof=1) if len(mine) > 1 else 0.0
        out.append(f"| {key[0]} | {key[1]} | {key[2]} | {len(mine)} | {mape.mean():.2f} +- {spread:.2f} | "
                   f"{tau.mean():.3f} | {mine[0]['noise_floor_single_mape_pct']:.2f} |")
    return "\n".join(out) + "\n"


def _coverage(row: dict[str, Any]) -> str:
    if "interval_coverage_pct" not in row:
        return "-"
    return f"{row['interval_coverage_pct']:.1f}% / {row['undisturbed']['interval_coverage_pct']:.1f}%"


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
            by_size: dict[int, list[float]] = {}
            for r in mine:
                if r["predictor"] == kind:
                    by_size.setdefault(r["train_size"], []).append(r["mape_pct"])
            n = sorted(by_size)
            ax.errorbar(n, [np.mean(by_size[k]) for k in n],
                        yerr=[np.std(by_size[k], ddof=1) if len(by_size[k]) > 1 else 0.0 for k in n], marker="o",
                        capsize=3, label=kind + (" (mean +- std over fit seeds)" if max(map(len, by_size.values())) > 1
                                                 else ""))
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


TRANSFER_SIZES = (5, 10, 20, 50, 100)
ALL_OTHERS = "all others"  # the prior label of a fit given every other dataset's predictor


def transfer_run(datasets: Iterable[str | Path], sizes: Iterable[int] = TRANSFER_SIZES, draws: int = 20,
                 stat: str = DEFAULT_STAT, log: Callable[[str], None] = print,
                 prior_kind: str = AUTO) -> list[dict[str, Any]]:
    """For every (prior, target) pair of datasets and every N: transfer fits from the prior dataset's full-data
    ``prior_kind`` predictor (``auto``: the kind recommended for its backend and device; fitted here on its training
    split) to N target rows, over ``draws`` random draws and once with the diverse design, against a from-scratch
    fit of the kind that needs the fewest rows (``scratch_kind``) on the same rows and the target's own full-data
    predictor of its kind; scored on the target's fixed held-out split (undisturbed rows), with the 90% interval's
    coverage."""
    datasets, sizes = list(datasets), list(sizes)
    if prior_kind != AUTO and prior_kind not in list_predictors():
        raise PredictorError(f"unknown prior predictor {prior_kind!r} (known: {AUTO}, {', '.join(list_predictors())})")
    scratch_kind = min(list_predictors(), key=lambda k: KINDS[k].min_rows)
    if len(datasets) < 2:
        raise PredictorError("a transfer benchmark needs at least two datasets (--dataset, repeatable)")
    if min(sizes) < MIN_ROWS:
        raise PredictorError(f"transfer sizes must be >= {MIN_ROWS} (a transfer fit needs {MIN_ROWS} rows), got "
                             f"{sizes}")
    from latkit.predictors.transfer import TransferPredictor
    from latkit.selection import d_optimal, design_features
    from latkit.space import parse

    data, noise, where = {}, {}, {}
    for path in datasets:
        ds = load(path)
        where[Path(path).name] = (ds.header["backend"], ds.header["device"], ds.header["config"])
        x, y, index, clean = dataset_xy(ds, stat)
        train, test = split(index, clean)
        data[Path(path).name] = (x, y, train, test & clean, [parse(g) for g in ds.samples().column("genotype")
                                                              .to_pylist()])
        noise[Path(path).name] = noise_floor(ds, stat, ds.header.get("protocol", {}).get("min_cpu_share"))

    full = {}
    for name, (x, y, train, test, _) in data.items():
        kind = resolve(prior_kind, *where[name][:2])
        predictor = make_predictor(kind)
        predictor.fit(x[train], y[train], 0)
        predictor.meta["interval"] = cross_conformal(kind, {}, x[train], y[train])
        full[name] = predictor
    rows = []
    pairs = [((p,), t) for p in data for t in data if p != t]
    if len(data) > 2:  # every other dataset's predictor given as priors: the fit picks one (or weighs them all)
        pairs += [(tuple(p for p in data if p != t), t) for t in data]
    for priors, target in pairs:
        prior = priors[0] if len(priors) == 1 else ALL_OTHERS
        x, y, train, test, genotypes = data[target]
        candidates = np.flatnonzero(train)
        design = design_features([genotypes[i] for i in candidates])
        reference = {**metrics(y[test], full[target].predict_ms(x[test])),
                     "coverage_pct": coverage_pct(full[target], x[test], y[test])}
        for n in sizes:
            if n > len(candidates):
                log(f"{prior} -> {target} N={n}: skipped, the target has only {len(candidates)} training rows")
                continue
            picks = [("random", np.random.default_rng([d, n]).choice(candidates, n, replace=False))
                     for d in range(draws)]
            picks.append(("diverse", candidates[d_optimal(design, n)]))
            for how, pick in picks:
                transfer = TransferPredictor([full[p] for p in priors])
                transfer.fit(x[pick], y[pick])
                scratch = make_predictor(scratch_kind)
                scratch.fit(x[pick], y[pick])
                rows.append({"prior": prior, "target": target, "n": n, "draw": how,
                             "prior_kind": "+".join(dict.fromkeys(full[p].kind for p in priors)),
                             "target_kind": full[target].kind, "scratch_kind": scratch_kind,
                             "same_shape_cpu": len(priors) == 1 and where[priors[0]][1:] == where[target][1:]
                             and where[target][1] == "cpu",
                             "backends": sorted({where[p][0] for p in priors} | {where[target][0]}),
                             "target_noise_pct": noise[target]["single_mape_pct"],
                             "transfer": metrics(y[test], transfer.predict_ms(x[test])),
                             "scratch": metrics(y[test], scratch.predict_ms(x[test])), "full": reference,
                             "coverage_pct": coverage_pct(transfer, x[test], y[test])})
            mine = [r for r in rows[-len(picks):] if r["draw"] == "random"]
            log(f"{prior} -> {target} N={n}: transfer MAPE {np.mean([r['transfer']['mape_pct'] for r in mine]):.2f}% "
                f"Spearman {np.mean([r['transfer']['spearman'] for r in mine]):.3f}, scratch MAPE "
                f"{np.mean([r['scratch']['mape_pct'] for r in mine]):.2f}%")
    return rows


def transfer_markdown(rows: list[dict[str, Any]]) -> str:
    """Mean (and standard deviation over draws) per pair and N; the diverse design's row beside the random draws;
    then the few-shot targets (``transfer_targets``), met or missed."""
    head = ("| prior -> target | N | transfer MAPE % | transfer Spearman | transfer Kendall | within 10% | "
            f"scratch ({', '.join(dict.fromkeys(r['scratch_kind'] for r in rows))}) MAPE % | scratch Spearman | diverse: MAPE % / Spearman | 90% interval coverage | "
            f"full-data ({', '.join(dict.fromkeys(r['target_kind'] for r in rows))}) MAPE % (coverage) | "
            "target noise % |\n"
            + "|---" * 12 + "|\n")
    lines = []
    for key in dict.fromkeys((r["prior"], r["target"], r["n"]) for r in rows):
        mine = [r for r in rows if (r["prior"], r["target"], r["n"]) == key and r["draw"] == "random"]
        div = next(r for r in rows if (r["prior"], r["target"], r["n"]) == key and r["draw"] == "diverse")

        def ms(side: str, m: str) -> str:
            v = np.array([r[side][m] for r in mine])
            return f"{v.mean():.3f} +- {v.std():.3f}" if m in ("spearman", "kendall") else f"{v.mean():.2f} +- {v.std():.2f}"

        lines.append(f"| {Path(key[0]).stem} -> {Path(key[1]).stem} | {key[2]} | {ms('transfer', 'mape_pct')} | "
                     f"{ms('transfer', 'spearman')} | {ms('transfer', 'kendall')} | "
                     f"{np.mean([r['transfer']['within10_pct'] for r in mine]):.1f}% | {ms('scratch', 'mape_pct')} | "
                     f"{ms('scratch', 'spearman')} | {div['transfer']['mape_pct']:.2f} / {div['transfer']['spearman']:.3f} | "
                     f"{np.mean([r['coverage_pct'] for r in mine]):.1f}% | {mine[0]['full']['mape_pct']:.2f} "
                     f"({mine[0]['full'].get('coverage_pct', float('nan')):.1f}%) | "
                     f"{mine[0].get('target_noise_pct', float('nan')):.2f} |")
    targets = transfer_targets(rows)
    return head + "\n".join(lines) + "\n" + ("\nFew-shot targets (mean over random draws):\n\n" + "\n".join(targets)
                                            + "\n" if targets else "")


# issue 21's few-shot targets (HELP reports Spearman 0.93 from 10 samples, NASFLAT 0.96 at 20, on NAS-Bench-201)
FEW_SHOT_N, FEW_SHOT_SPEARMAN = 20, 0.9  # every pair of CPU datasets of one shape
PAIR_BACKENDS, PAIR_SPEARMAN, PAIR_MAPE_PCT = frozenset({"onnxruntime", "openvino"}), 0.95, 3.0  # between these two
N50, N50_NOISE_FACTOR = 50, 1.5  # at N=50: MAPE within 1.5x the target's single-measurement noise


def transfer_targets(rows: list[dict[str, Any]]) -> list[str]:
    """One line per (single prior, target) pair of CPU datasets of one shape and per target it is held to, with the
    mean over random draws and whether it is met."""
    lines = []
    for prior, target in dict.fromkeys((r["prior"], r["target"]) for r in rows if r.get("same_shape_cpu")):
        def mean(n: int, side: str, m: str) -> float | None:
            v = [r[side][m] for r in rows if (r["prior"], r["target"], r["n"], r["draw"]) == (prior, target, n,
                                                                                                "random")]
            return float(np.mean(v)) if v else None

        name = f"{Path(prior).stem} -> {Path(target).stem}"
        rho, mape = mean(FEW_SHOT_N, "transfer", "spearman"), mean(FEW_SHOT_N, "transfer", "mape_pct")
        pair = next(r for r in rows if (r["prior"], r["target"]) == (prior, target))
        if rho is not None:
            strict = set(pair["backends"]) == PAIR_BACKENDS
            ok = rho >= (PAIR_SPEARMAN if strict else FEW_SHOT_SPEARMAN) and (not strict or mape <= PAIR_MAPE_PCT)
            want = (f"Spearman >= {PAIR_SPEARMAN}, MAPE <= {PAIR_MAPE_PCT:g}%" if strict
                    else f"Spearman >= {FEW_SHOT_SPEARMAN}")
            lines.append(f"- {name}, N={FEW_SHOT_N}: Spearman {rho:.3f}, MAPE {mape:.2f}% (target {want}): "
                         f"{'met' if ok else 'missed'}")
        mape50 = mean(N50, "transfer", "mape_pct")
        if mape50 is not None and not np.isfinite(pair["target_noise_pct"]):
            lines.append(f"- {name}, N={N50}: MAPE {mape50:.2f}% (the target has no noise floor to hold it to)")
        elif mape50 is not None:
            bound = N50_NOISE_FACTOR * pair["target_noise_pct"]
            lines.append(f"- {name}, N={N50}: MAPE {mape50:.2f}% (target <= {N50_NOISE_FACTOR}x the noise "
                         f"{pair['target_noise_pct']:.2f}% = {bound:.2f}%): {'met' if mape50 <= bound else 'missed'}")
    return lines


def _short(name: str) -> str:
    """A dataset file's stem without the default shape (``onnxruntime_cpu_b1_r32_c36_l20`` -> ``onnxruntime_cpu``)."""
    return Path(name).stem.replace("_b1_r32_c36_l20", "")


def transfer_plot(rows: list[dict[str, Any]], out_dir: str | Path) -> list[Path]:
    """Per target: held-out MAPE against N for each prior (mean and spread over draws), scratch and full data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for target in dict.fromkeys(r["target"] for r in rows):
        fig, ax = plt.subplots(figsize=(6, 4))
        mine = [r for r in rows if r["target"] == target and r["draw"] == "random"]
        sizes = sorted({r["n"] for r in mine})
        for prior in dict.fromkeys(r["prior"] for r in mine):
            v = [[r["transfer"]["mape_pct"] for r in mine if r["prior"] == prior and r["n"] == n] for n in sizes]
            ax.errorbar(sizes, [np.mean(a) for a in v], yerr=[np.std(a) for a in v], marker="o", capsize=3,
                        label=f"transfer from {_short(prior)}")
        v = [[r["scratch"]["mape_pct"] for r in mine if r["n"] == n] for n in sizes]
        ax.errorbar(sizes, [np.mean(a) for a in v], yerr=[np.std(a) for a in v], marker="s", capsize=3, ls="--",
                    label=f"from scratch ({mine[0]['scratch_kind']})")
        ax.axhline(mine[0]["full"]["mape_pct"], color="grey", ls=":",
                   label=f"full data ({mine[0]['target_kind']})")
        if "target_noise_pct" in mine[0]:
            ax.axhline(mine[0]["target_noise_pct"], color="black", ls="--", lw=0.8,
                       label="single-measurement noise")
        ax.set(xscale="log", xlabel="measured target architectures N", ylabel="held-out MAPE (%)",
               title=Path(target).stem)
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(Path(out_dir) / f"transfer_{Path(target).stem}.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    return written
