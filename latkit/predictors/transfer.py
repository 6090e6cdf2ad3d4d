"""Few-shot transfer: a predictor for a new backend or shape from a handful of measurements and existing predictors.

``prediction = sum_k a_k * prior_k(x) + b + x . delta``: each prior (a predictor fitted on another backend, device or
network shape) is rescaled, and a correction ``delta`` is added: per op group (``op_groups``: 28 counts, what an op
type costs where it sits) and per (cell, edge, op), each shrunk toward zero by a ridge penalty. Whether to use each
correction and how strongly to shrink it is chosen by exact leave-one-out error (closed form) with the
one-standard-error rule, so with 5 measurements the fit is essentially a scale and shift of the priors, and with more
the corrections learn what the priors miss. Given several priors, the fit tries each alone and all together under
the same rule: the best single prior unless weighting them all is clearly better (with few rows it rarely is). The
prediction interval (split-conformal, relative) comes from nested leave-one-out residuals: the whole choice made
again without each row (closed form, from leave-two-out errors), since the chosen fit's own residuals saw the
choice.
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from threadpoolctl import threadpool_limits

from latkit.predictors.base import (Predictor, PredictorError, conformal_rel, differentiable_kinds, load_dir,
                                    register)
from latkit.space import ENCODING_SIZE, op_groups

ALPHAS = tuple(10.0 ** k for k in range(-3, 3))  # ridge strengths tried for each correction (times n)
MIN_ROWS = 3  # a scale and a shift need 2; one more to leave one out
NESTED_MAX_ROWS = 200  # up to this many rows the interval comes from nested leave-one-out (n x n hat matrices)


def _solve(a: np.ndarray, y: np.ndarray, penalty: np.ndarray,
           pairs: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Coefficients of ``min |a c - y|^2 + c' diag(penalty) c``, the leave-one-out residuals, and with ``pairs`` the
    leave-two-out residuals: ``pair[i, j]`` is row j's residual when the fit leaves out rows i and j (nan on the
    diagonal). Both come from the hat matrix H by the leave-set-out identity ``e_S = (I - H_SS)^-1 r_S``; a row the
    fit interpolates has none (inf)."""
    from scipy.linalg import cho_factor, cho_solve  # here, not at import: SciPy costs every latkit command

    gram = a.T @ a + np.diag(penalty)
    try:  # positive definite whenever the unpenalised columns (priors, shift) are independent: Cholesky, fast
        factor = cho_factor(gram)
        coef, inv_at = cho_solve(factor, a.T @ y), cho_solve(factor, a.T)
    except np.linalg.LinAlgError:  # e.g. two identical priors: the minimum-norm solution
        coef, inv_at = np.linalg.lstsq(gram, a.T @ y, rcond=None)[0], np.linalg.pinv(gram) @ a.T
    resid = y - a @ coef
    hat = a @ inv_at if pairs else None  # the whole n x n hat matrix only where the pairs need it
    d = 1.0 - (np.diag(hat) if pairs else np.einsum("ij,ji->i", a, inv_at))
    with np.errstate(divide="ignore", invalid="ignore"):
        loo = np.where(d > 1e-9, resid / d, np.inf)
        if not pairs:
            return coef, loo, None
        det = np.outer(d, d) - hat * hat.T
        pair = np.where(det > 1e-12, (hat.T * resid[:, None] + d[:, None] * resid[None, :]) / det, np.inf)
    np.fill_diagonal(pair, np.nan)
    return coef, loo, pair


def _design(x: np.ndarray, prior_ms: np.ndarray, subset: tuple[int, ...], a_group: float | None,
            a_edge: float | None, counts: np.ndarray | None = None) -> np.ndarray:
    """The fit's columns: the chosen priors' predictions and a shift, then the op-group counts (``counts``, x @
    op_groups(), computed here unless given) and the encoding when their correction is used."""
    free = np.column_stack([prior_ms[:, list(subset)], np.ones(len(x))])
    if a_group is not None and counts is None:
        counts = x @ op_groups()
    return np.column_stack([b for b, u in zip((free, counts, x), (True, a_group is not None, a_edge is not None))
                            if u])


def _one_standard_error(fits: list[tuple[tuple, float, float]]) -> int | None:
    """Of (simplicity, error, standard error) per fit, the simplest whose error is within one standard error of the
    best (the lower error among equally simple ones); None if no error is finite. Choosing among 49 fits per prior
    set by their leave-one-out error alone overfits the choice when rows are few."""
    finite = [i for i, f in enumerate(fits) if np.isfinite(f[1])]
    if not finite:
        return None
    best = min(finite, key=lambda i: fits[i][1])
    bar = fits[best][1] + fits[best][2]
    return min((i for i in finite if fits[i][1] <= bar), key=lambda i: (fits[i][0], fits[i][1]))


def _nested_residuals(fits: list[dict[str, Any]], y: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Each row's residual under the whole procedure run without it: the choice among ``fits`` made again on the
    other rows (their leave-two-out errors), then the chosen fit's prediction of the row left out. The chosen
    fit's own leave-one-out residuals are too small for an interval: the choice saw them (at 20 rows a 90% interval
    from them covered 62% of 61 new architectures on the H200). A row no fit can judge keeps ``fallback``, and so
    does every row of a fit on more than NESTED_MAX_ROWS rows (n x n hat matrices; `latkit bench transfer` found the
    chosen fit's own residuals covering a median 87% at 100 rows). The choice without row i keeps the full fit's
    candidate list and penalty strengths (times n), so it differs from a refit on n - 1 rows only in those. A fit
    that cannot predict row i without it (an interpolated row) is not a candidate for it."""
    honest = np.array(fallback, dtype=np.float64)
    if not fits or "without" not in fits[0]:
        return honest
    for i in range(len(y)):
        chosen = _one_standard_error([(f["simplicity"], float(f["without"][0][i]) if np.isfinite(f["loo"][i])
                                       else np.inf, float(f["without"][1][i])) for f in fits])
        if chosen is not None:
            honest[i] = fits[chosen]["loo"][i]
    return honest


@register("transfer", min_rows=None, weights="weights.safetensors")
class TransferPredictor(Predictor):
    """Rescaled priors plus a shrunk per-op correction (see the module docstring); differentiable if every prior is."""

    DEFAULTS: dict[str, Any] = {"level": 0.9}

    def __init__(self, priors: list[Predictor] | None = None, **params: Any):
        super().__init__(**{**self.DEFAULTS, **params})
        self.priors = list(priors or [])
        self.coef = np.zeros(0)  # scale per prior, then the shift (ms)
        self.delta = np.zeros(ENCODING_SIZE)  # correction per (cell, edge, op), ms
        self.interval_rel = float("nan")  # half-width of the prediction interval, relative to the prediction
        self.interval_level = float("nan")  # the coverage it guarantees: the asked level, or less with few rows

    @property
    def differentiable(self) -> bool:  # type: ignore[override]
        return bool(self.priors) and all(p.differentiable for p in self.priors)

    def fit(self, x: np.ndarray, y_ms: np.ndarray, seed: int = 0) -> dict[str, Any]:
        """Choose, by exact leave-one-out MAPE, which prior to rescale (with several: each alone, or all together)
        and how strongly to shrink a per-group and a per-edge correction (or to leave them out); nested
        leave-one-out residuals (the choice made again without each row) give the interval. The solves are tiny:
        BLAS runs them on one thread (its threads spinning for a busy core once held a fit for minutes)."""
        with threadpool_limits(limits=1, user_api="blas"):
            return self._fit(x, y_ms)

    def _fit(self, x: np.ndarray, y_ms: np.ndarray) -> dict[str, Any]:
        x = self._check_input(x).astype(np.float64)
        y = np.asarray(y_ms, dtype=np.float64)
        if not self.priors:
            raise PredictorError("a transfer fit needs at least one prior predictor (--prior)")
        if len(y) < MIN_ROWS:
            raise PredictorError(f"a transfer fit needs at least {MIN_ROWS} measured architectures, got {len(y)}")
        fits = self._candidates(x, y, np.column_stack([p.predict_ms(x) for p in self.priors]))
        full = [(f["simplicity"], f["ape"].mean(), f["ape"].std() / np.sqrt(len(y))) for f in fits]
        chosen = _one_standard_error(full)
        if chosen is None:
            raise PredictorError(f"no transfer fit can be judged on these {len(y)} rows (each is interpolated): "
                                 "measure more architectures")
        fit = fits[chosen]
        k = len(fit["subset"]) + 1
        self.coef = np.zeros(len(self.priors) + 1)  # priors the fit did not choose keep a scale of 0
        self.coef[list(fit["subset"])] = fit["coef"][:k - 1]
        self.coef[-1] = fit["coef"][k - 1]
        rest = fit["coef"][k:]
        groups = op_groups()
        self.delta = np.zeros(ENCODING_SIZE)
        if fit["a_group"] is not None:
            self.delta += groups @ rest[:groups.shape[1]]
            rest = rest[groups.shape[1]:]
        if fit["a_edge"] is not None:
            self.delta += rest
        honest = _nested_residuals(fits, y, fit["loo"])
        self.interval_rel, self.interval_level = conformal_rel(honest / self.predict_ms(x), self.params["level"])
        return {"loo_mape_pct": 100 * float(fit["ape"].mean()),
                "nested_loo_mape_pct": 100 * float(np.mean(np.abs(honest) / y)) if "without" in fit else None,
                "group_ridge": fit["a_group"], "edge_ridge": fit["a_edge"], "priors_used": list(fit["subset"]),
                "scales": self.coef[:-1].tolist(), "shift_ms": float(self.coef[-1])}

    def _candidates(self, x: np.ndarray, y: np.ndarray, prior_ms: np.ndarray,
                    penalty_rows: int | None = None) -> list[dict[str, Any]]:
        """Every fit the choice is made among: each prior alone (and all together, with rows to spare), times no,
        or each strength of, per-group and per-edge correction; strengths are per row (``penalty_rows``: the
        rows they scale with, len(y) unless given). Up to NESTED_MAX_ROWS rows each also keeps, per row i, its
        leave-one-out error over the other rows as if fitted without row i."""
        groups = op_groups()
        counts = x @ groups  # once, not once per candidate
        rows = penalty_rows or len(y)
        nested = len(y) <= NESTED_MAX_ROWS
        subsets = [(i,) for i in range(len(self.priors))]
        if len(self.priors) > 1 and len(y) >= len(self.priors) + 3:  # fewer unshrunk coefficients than rows, and
            subsets.append(tuple(range(len(self.priors))))           # two to spare, or LOO cannot judge the fit
        fits = []
        for subset, a_group, a_edge in itertools.product(subsets, (None,) + ALPHAS, (None,) + ALPHAS):
            a = _design(x, prior_ms, subset, a_group, a_edge, counts)
            used = [True, a_group is not None, a_edge is not None]
            penalty = np.concatenate([np.zeros(len(subset) + 1)]
                                     + ([np.full(groups.shape[1], a_group * rows)] if used[1] else [])
                                     + ([np.full(ENCODING_SIZE, a_edge * rows)] if used[2] else []))
            coef, loo, pair = _solve(a, y, penalty, pairs=nested)
            # simplest first: one prior before several, no per-edge correction before one, no group correction
            # before one, stronger shrinkage (ties: the lower error, added by the caller)
            simplicity = (len(subset), used[2], used[1], -np.log10(a_edge or 1e9), -np.log10(a_group or 1e9))
            fit = {"simplicity": simplicity, "subset": subset, "a_group": a_group, "a_edge": a_edge, "coef": coef,
                   "loo": loo, "ape": np.abs(loo) / y}
            if pair is not None:  # row i's entries: the errors of this fit made without row i
                with np.errstate(invalid="ignore"):
                    pair_ape = np.abs(pair) / y[None, :]
                    fit["without"] = (np.nanmean(pair_ape, axis=1), np.nanstd(pair_ape, axis=1) / np.sqrt(len(y) - 1))
            fits.append(fit)
        return fits

    def predict_ms(self, x: np.ndarray) -> np.ndarray:
        x = self._check_input(x).astype(np.float64)
        return sum(c * p.predict_ms(x) for c, p in self._chosen()) + self.coef[-1] + x @ self.delta

    def _chosen(self) -> list[tuple[float, Predictor]]:
        """(scale, prior) of the priors the fit chose; the others (scale 0) are never evaluated."""
        return [(float(c), p) for c, p in zip(self.coef, self.priors) if c != 0]

    def interval_ms(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ``level`` prediction interval (ms), from the fit's nested leave-one-out residuals."""
        pred = self.predict_ms(x)
        return pred * (1 - self.interval_rel), pred * (1 + self.interval_rel)

    def torch_ms(self, x: torch.Tensor) -> torch.Tensor:
        if not self.differentiable:
            raise PredictorError("a transfer predictor is differentiable only if all its priors are ("
                                 f"{', '.join(differentiable_kinds())})")
        x = x.to(torch.float32)
        out = sum(c * p.torch_ms(x) for c, p in self._chosen()) + float(self.coef[-1])
        return out + x @ torch.as_tensor(self.delta, dtype=torch.float32, device=x.device)

    def _save_weights(self, directory: Path) -> None:
        save_file({"coef": torch.from_numpy(self.coef), "delta": torch.from_numpy(self.delta),
                   "interval_rel": torch.tensor([self.interval_rel], dtype=torch.float64)},
                  str(self.weights_path(directory)))
        for i, prior in enumerate(self.priors):
            prior.save(directory / f"prior_{i}")

    def _load_weights(self, directory: Path) -> None:
        t = load_file(str(self.weights_path(directory)))
        self.coef, self.delta, self.interval_rel = t["coef"].numpy(), t["delta"].numpy(), float(t["interval_rel"][0])
        self.interval_level = float(self.meta.get("interval", {}).get("level", float("nan")))
        self.priors = [load_dir(p) for p in sorted(directory.glob("prior_*"), key=lambda p: int(p.name[6:]))]
        if len(self.priors) != len(self.coef) - 1:  # one scale per prior, then the shift
            raise PredictorError(f"{directory}: {len(self.priors)} prior_* directories, where its weights scale "
                                 f"{len(self.coef) - 1} priors; refit it")
