"""Fit predictors on latency datasets, score them on a fixed held-out split, load saved or embedded ones."""
from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from latkit.datasets.store import STAT_COLUMNS, Dataset, load
from latkit.predictors.base import KINDS, Predictor, PredictorError, conformal_rel, load_dir, make_predictor
from latkit.predictors.models import timed_fit
from latkit.predictors.recommend import AUTO, embedded_name, resolve
from latkit.predictors.transfer import MIN_ROWS, TransferPredictor
from latkit.space import encode_many, parse

# Latency a predictor learns by default: the minimum of the timed runs. On this shared CPU it is 10x more
# repeatable than the median (noise floor ~1-2% against ~15-25%; benchmarks/RESULTS.md, "How noisy is a measurement, and why?").
DEFAULT_STAT = "min_ms"
LATENCY_STATS = tuple(c for c in STAT_COLUMNS if c != "std_ms")  # what a predictor can learn
HOLDOUT_EVERY = 5  # sample index % 5 == 4 is held out: a fixed split, the same for every predictor and size
INTERVAL_LEVEL = 0.9  # the prediction interval every fitted predictor carries
INTERVAL_FOLDS = 5


def undisturbed(ds: Dataset) -> np.ndarray:
    """Mask of the successful samples whose timed loop got the protocol's share of a core.

    A 1-thread CPU loop that stayed below ``min_cpu_share`` after every attempt was slowed by other work on the
    machine (on the shipped CPU datasets such rows are off by ~10% against ~3.5% for the rest); they stay in the
    file, predictors do not learn from them, and held-out scores are given with and without them. Other
    datasets keep every row.
    """
    t = ds.samples(ok_only=True)
    protocol = ds.header.get("protocol", {})
    keep = np.ones(t.num_rows, dtype=bool)
    if ds.header.get("device") == "cpu" and protocol.get("threads") == 1 and "min_cpu_share" in protocol:
        share = t.column("timing_cpu_ms").to_numpy() / t.column("timing_ms").to_numpy()
        keep = share >= protocol["min_cpu_share"]
    return keep


def dataset_xy(ds: Dataset, stat: str = DEFAULT_STAT,
               normalised: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(encodings, latencies in ms, sample indices, undisturbed mask) of the dataset's successful samples; the
    latencies normalised by the reference timed beside each (``Dataset.latency_ms``) where the dataset is a duet."""
    if stat not in LATENCY_STATS:
        raise PredictorError(f"unknown latency statistic {stat!r} (known: {', '.join(LATENCY_STATS)})")
    t = ds.samples(ok_only=True)
    x = encode_many(parse(g) for g in t.column("genotype").to_pylist())
    return x, ds.latency_ms(t, stat, normalised), t.column("index").to_numpy(), undisturbed(ds)


def holdout(index: np.ndarray) -> np.ndarray:
    """Boolean mask of the held-out rows."""
    return index % HOLDOUT_EVERY == HOLDOUT_EVERY - 1


def training_subset(n_train: int, size: int | None, seed: int = 0) -> np.ndarray:
    """The first ``size`` rows of a fixed permutation of the training rows (nested across sizes)."""
    order = np.random.default_rng(seed).permutation(n_train)
    return order if size is None or size >= n_train else order[:size]


def metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MAPE, RMSE (ms), share within +-5 / +-10 %, Spearman and Kendall rank correlation; NaN where a figure is
    undefined (no rows; a rank correlation of fewer than 2 rows or of a constant), without numpy's or SciPy's
    warnings."""
    if not len(y_true):
        return {k: float("nan") for k in ("mape_pct", "rmse_ms", "within5_pct", "within10_pct", "spearman",
                                           "kendall")} | {"n": 0}
    ape = np.abs(y_pred - y_true) / y_true
    from scipy import stats as sstats  # here, not at import: SciPy at start-up slowed every command

    ranked = len(y_true) >= 2 and np.ptp(y_true) > 0 and np.ptp(y_pred) > 0
    return {"mape_pct": float(100 * ape.mean()), "rmse_ms": float(np.sqrt(np.mean((y_pred - y_true) ** 2))),
            "within5_pct": float(100 * (ape <= 0.05).mean()), "within10_pct": float(100 * (ape <= 0.10).mean()),
            "spearman": float(sstats.spearmanr(y_true, y_pred).statistic) if ranked else float("nan"),
            "kendall": float(sstats.kendalltau(y_true, y_pred).statistic) if ranked else float("nan"),
            "n": int(len(y_true))}


def dataset_hash(index: np.ndarray, y: np.ndarray) -> str:
    """A hash of exactly the (index, latency) pairs a predictor saw."""
    order = np.argsort(index)
    return hashlib.sha256(np.stack([index[order].astype(np.float64), y[order]]).tobytes()).hexdigest()[:16]


def split(index: np.ndarray, clean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, held-out rows): predictors learn from undisturbed rows only, and are scored on every
    held-out row (``held_out_scores`` also reports the undisturbed ones)."""
    test = holdout(index)
    return ~test & clean, test


def held_out_scores(y: np.ndarray, predicted: np.ndarray, clean: np.ndarray) -> dict[str, Any]:
    """Metrics on all held-out rows, with those on the undisturbed ones under ``undisturbed``."""
    return {**metrics(y, predicted), "undisturbed": metrics(y[clean], predicted[clean])}


def fit_dataset(path: str | Path, kind: str, stat: str = DEFAULT_STAT, train_size: int | None = None,
                seed: int = 0, normalised: bool = True, **params: Any) -> tuple[Predictor, dict[str, Any]]:
    """Fit ``kind`` (``auto``: the one recommended for the dataset's backend and device) on the training part of a
    dataset (normalised latencies where it is a duet, unless ``normalised`` is False); returns the predictor and
    its held-out metrics."""
    if train_size is not None and train_size < 2:
        raise PredictorError(f"the training size must be >= 2 architectures, got {train_size}")
    ds = load(path)
    kind = resolve(kind, ds.header["backend"], ds.header["device"])
    x, y, index, clean = dataset_xy(ds, stat, normalised)
    train, test = split(index, clean)
    if not train.any() or not test.any():
        raise PredictorError(f"{path}: too few samples to hold out a test split ({len(index)} rows)")
    x_tr, y_tr, i_tr = x[train], y[train], index[train]
    pick = training_subset(len(x_tr), train_size, seed)
    predictor = make_predictor(kind, **params)
    report, fit_s = timed_fit(predictor, x_tr[pick], y_tr[pick], seed)
    predictor.meta = _meta(ds, path, stat, normalised, i_tr[pick], y_tr[pick], None, fit_s, report)
    predictor.meta["interval"] = cross_conformal(kind, params, x_tr[pick], y_tr[pick], seed)
    predictor.meta["held_out"] = held_out = scored(predictor, x[test], y[test], clean[test])
    few = KINDS[kind].min_rows  # from-scratch predictors below this many rows are mostly noise
    if len(pick) < few:
        predictor.meta["warnings"] = [f"{len(pick)} architectures are few for a from-scratch {kind} (its errors are "
                                      f"mostly noise below {few}); a transfer fit from an existing "
                                      "predictor needs far fewer: --prior BACKEND"]
    return predictor, held_out


def scored(predictor: Predictor, x: np.ndarray, y: np.ndarray, clean: np.ndarray) -> dict[str, Any]:
    """Held-out scores (``held_out_scores``) and the share of rows inside the predictor's interval."""
    held_out = held_out_scores(y, predictor.predict_ms(x), clean)
    held_out["interval_coverage_pct"] = coverage_pct(predictor, x, y)
    held_out["undisturbed"]["interval_coverage_pct"] = coverage_pct(predictor, x[clean], y[clean])
    return held_out


def coverage_pct(predictor: Predictor, x: np.ndarray, y: np.ndarray) -> float:
    """Share (%) of the measured latencies ``y`` inside the predictor's interval (NaN for no rows)."""
    if not len(y):
        return float("nan")
    lo, hi = predictor.interval_ms(x)
    return float(100 * np.mean((lo <= y) & (y <= hi)))


def cross_conformal(kind: str, params: dict[str, Any], x: np.ndarray, y: np.ndarray, seed: int = 0,
                    level: float = INTERVAL_LEVEL, folds: int = INTERVAL_FOLDS) -> dict[str, Any]:
    """The relative half-width of a ``level`` prediction interval, from out-of-fold residuals: ``folds`` extra fits
    on the training rows, each predicting the fold it did not see (cross-conformal; the held-out split stays
    untouched, so the coverage measured on it is honest)."""
    folds = min(folds, len(y))
    fold = np.random.default_rng(seed + 1).permutation(len(y)) % folds
    pred = out_of_fold_ms(kind, params, x, y, fold, seed)
    rel, honest = conformal_rel((y - pred) / pred, level)
    return {"level": honest, "rel": rel, "method": f"{folds}-fold cross-conformal", "n": int(len(y))}


def out_of_fold_ms(kind: str, params: dict[str, Any], x: np.ndarray, y: np.ndarray, fold: np.ndarray, seed: int = 0,
                   fit_rows: np.ndarray | None = None) -> np.ndarray:
    """Each row's prediction (ms) by a ``kind`` predictor fitted on the other folds' rows (of ``fit_rows`` only,
    where given: e.g. the undisturbed ones), so no row is predicted by a fit that saw it."""
    pred = np.empty(len(y))
    for k in np.unique(fold):
        train = fold != k if fit_rows is None else (fold != k) & fit_rows
        model = make_predictor(kind, **params)
        model.fit(x[train], y[train], seed)
        pred[fold == k] = model.predict_ms(x[fold == k])
    return pred


def anchor_meta(ds: Dataset, stat: str = DEFAULT_STAT) -> list[dict[str, Any]]:
    """The dataset's anchors as a predictor records them: each one's genotype and normalised latency (ms), which
    ``latkit.calibrate`` times again on the user's machine."""
    anchors = set(ds.anchors())
    rows = ds.samples().filter(pa.array([i in anchors for i in ds.samples().column("index").to_pylist()]))
    return [{"index": int(i), "genotype": g, "ms": float(ms)} for i, g, ms in
            zip(rows.column("index").to_pylist(), rows.column("genotype").to_pylist(), ds.latency_ms(rows, stat))]


def _meta(ds: Dataset, path: str | Path, stat: str, normalised: bool, index: np.ndarray, y: np.ndarray,
          held_out: dict[str, Any] | None, fit_s: float, report: dict[str, Any]) -> dict[str, Any]:
    """What a fitted predictor records about its data: target (backend, device, options, network, protocol),
    dataset, the unit of its milliseconds (normalised: the reference's baseline), the rows it saw, held-out scores."""
    h = ds.header
    normalised = normalised and ds.duet
    return {
        "backend": h["backend"], "device": h["device"], "device_name": h.get("device_name"), "config": h["config"],
        "backend_options": h.get("backend_options", {}), "protocol": h.get("protocol", {}),
        "stat": stat, "normalised": normalised, "reference": h.get("reference"),
        "baseline_ms": ds.baseline_ms(stat) if normalised else None,
        "anchors": anchor_meta(ds, stat) if normalised else [],
        "dataset": Path(path).name, "dataset_hash": dataset_hash(index, y),
        "environment_hash": hashlib.sha256(json.dumps(h["environment"], sort_keys=True).encode()).hexdigest()[:16],
        "environment": h["environment"], "training_size": int(len(index)), "held_out": held_out,
        "fit_seconds": fit_s, "fit_report": report,
    }


def fit_transfer(path: str | Path, priors: list[str], stat: str = DEFAULT_STAT, train_size: int | None = None,
                 seed: int = 0, prior_kind: str = AUTO,
                 normalised: bool = True) -> tuple[Predictor, dict[str, Any] | None]:
    """A few-shot predictor for the dataset's target from existing predictors (backend names or directories; of a
    backend, its embedded ``prior_kind``: by default, ``auto``, the one recommended for it).

    Without ``train_size`` every undisturbed row of the (small) dataset is used and the scores are leave-one-out
    (no rows are held out); with it, ``train_size`` rows of the training split are used and the fixed held-out split
    scores the result, as for ``fit_dataset``. Returns the predictor and its held-out scores (None without them).
    """
    ds = load(path)
    x, y, index, clean = dataset_xy(ds, stat, normalised)
    loaded = [load_predictor(p, device=ds.header.get("device", "cpu"), kind=prior_kind) for p in priors]
    predictor = TransferPredictor(loaded)
    if train_size is None:
        rows, test = np.flatnonzero(clean), None
        if len(rows) < MIN_ROWS <= len(y):
            share = ds.header.get("protocol", {}).get("min_cpu_share", 0)
            raise PredictorError(f"{path}: {len(y)} architectures were measured, but {len(y) - len(rows)} of them got "
                                 f"less than {share:.0%} of a core in every timed loop (slowed by other work on the "
                                 f"machine) and are left out, leaving {len(rows)}; a transfer fit needs {MIN_ROWS}: "
                                 "measure more on a quiet core (--pin-cpu) into the same file")
    else:
        train, test = split(index, clean)
        rows = np.flatnonzero(train)[training_subset(int(train.sum()), train_size, seed)]
    report, fit_s = timed_fit(predictor, x[rows], y[rows], seed)
    held_out = None if test is None else scored(predictor, x[test], y[test], clean[test])
    predictor.meta = _meta(ds, path, stat, normalised, index[rows], y[rows], held_out, fit_s, report)
    predictor.meta["interval"] = {"level": predictor.interval_level, "rel": predictor.interval_rel,
                                  "method": "nested leave-one-out conformal"
                                  if report.get("nested_loo_mape_pct") is not None else "leave-one-out conformal",
                                  "n": int(len(rows))}
    predictor.meta["priors"] = [{"spec": spec, "kind": p.kind, "backend": p.meta.get("backend"),
                                 "device": p.meta.get("device"), "config": p.meta.get("config"),
                                 "dataset": p.meta.get("dataset")} for spec, p in zip(priors, loaded)]
    return predictor, held_out




def load_predictor(spec: str, device: str = "cpu", kind: str = AUTO, *, differentiable: bool = False) -> Predictor:
    """A saved predictor directory, or the embedded one for a backend name on ``device`` (``onnxruntime``), or on
    the device the name gives (``onnxruntime/cpu``: a CPU prior for a GPU dataset's transfer fit). ``kind``: which
    embedded kind; ``auto`` (the default) is the recommended one (``latkit recommend``), with ``differentiable``
    the best differentiable one (what a search needs)."""
    if Path(spec).is_dir():
        return load_dir(spec)
    from latkit.backends.registry import list_backends
    from latkit.network import NetConfig

    name, _, on = spec.partition("/")
    if name not in list_backends():
        raise PredictorError(f"{spec!r} is neither a predictor directory nor a backend ({', '.join(list_backends())})")
    device = on or device
    kind = resolve(kind, name, device, differentiable=differentiable)
    embedded = resources.files("latkit") / "predictors" / "pretrained" / embedded_name(name, device,
                                                                                        NetConfig().to_dict(), kind)
    if not embedded.is_dir():
        raise PredictorError(f"no embedded {kind} predictor for {name} on {device}; measure a dataset and "
                             f"'latkit fit' one, then pass --predictor DIR")
    return load_dir(Path(str(embedded)))


def predictor_for(spec: str, backend: str | None, device: str, kind: str = AUTO, force: bool = False,
                  differentiable: bool = False) -> Predictor:
    """``load_predictor(spec, ...)``, refused when fitted for another backend/device than ``backend`` on ``device``
    (with ``force``, a LatkitWarning)."""
    predictor = load_predictor(spec, device=device, kind=kind, differentiable=differentiable)
    if backend:
        predictor.check_target(backend, device, force=force)
    return predictor
