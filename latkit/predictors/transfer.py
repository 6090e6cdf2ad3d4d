"""Few-shot transfer: a predictor for a new backend or shape from a handful of measurements and existing predictors.

``prediction = sum_k a_k * prior_k(x) + b + x . delta``: each prior (a predictor fitted on another backend, device or
network shape) is rescaled, and a correction ``delta`` is added: per op group (``op_groups``: 28 counts, what an op
type costs where it sits) and per (cell, edge, op), each shrunk toward zero by a ridge penalty. Whether to use each
correction and how strongly to shrink it is chosen by exact leave-one-out error (closed form) with the
one-standard-error rule, so with 5 measurements the fit is essentially a scale and shift of the priors, and with more
the corrections learn what the priors miss. Given several priors, the fit tries each alone and all together under
the same rule: the best single prior unless weighting them all is clearly better (with few rows it rarely is). The
chosen fit's LOO residuals give the prediction interval (split-conformal, relative).
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from scipy.linalg import cho_factor, cho_solve
from threadpoolctl import threadpool_limits

from latkit.predictors.base import Predictor, PredictorError, conformal_rel, load_dir
from latkit.space import ENCODING_SIZE, op_groups

ALPHAS = tuple(10.0 ** k for k in range(-3, 3))  # ridge strengths tried for each correction (times n)
MIN_ROWS = 3  # a scale and a shift need 2; one more to leave one out


def _solve(a: np.ndarray, y: np.ndarray, penalty: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients of ``min |a c - y|^2 + c' diag(penalty) c`` and the leave-one-out residuals (hat matrix)."""
    gram = a.T @ a + np.diag(penalty)
    try:  # positive definite whenever the unpenalised columns (priors, shift) are independent: Cholesky, fast
        factor = cho_factor(gram)
        coef, inv_at = cho_solve(factor, a.T @ y), cho_solve(factor, a.T)
    except np.linalg.LinAlgError:  # e.g. two identical priors: the minimum-norm solution
        coef, inv_at = np.linalg.lstsq(gram, a.T @ y, rcond=None)[0], np.linalg.pinv(gram) @ a.T
    hat = np.einsum("ij,ji->i", a, inv_at)
    resid = y - a @ coef
    with np.errstate(divide="ignore", invalid="ignore"):  # a row the fit interpolates has no leave-one-out estimate
        return coef, np.where(1.0 - hat > 1e-9, resid / (1.0 - hat), np.inf)


class TransferPredictor(Predictor):
    """Rescaled priors plus a shrunk per-op correction (see the module docstring); differentiable if every prior is."""

    kind = "transfer"
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
        and how strongly to shrink a per-group and a per-edge correction (or to leave them out); the chosen fit's
        leave-one-out residuals give the interval. The solves are tiny: BLAS runs them on one thread (its threads
        spinning for a busy core once held a fit for minutes)."""
        with threadpool_limits(limits=1, user_api="blas"):
            return self._fit(x, y_ms)

    def _fit(self, x: np.ndarray, y_ms: np.ndarray) -> dict[str, Any]:
        x = self._check_input(x).astype(np.float64)
        y = np.asarray(y_ms, dtype=np.float64)
        if not self.priors:
            raise PredictorError("a transfer fit needs at least one prior predictor (--prior)")
        if len(y) < MIN_ROWS:
            raise PredictorError(f"a transfer fit needs at least {MIN_ROWS} measured architectures, got {len(y)}")
        groups = op_groups()
        prior_ms = np.column_stack([p.predict_ms(x) for p in self.priors])
        subsets = [(i,) for i in range(len(self.priors))]
        if len(self.priors) > 1 and len(y) >= len(self.priors) + 3:  # fewer unshrunk coefficients than rows, and
            subsets.append(tuple(range(len(self.priors))))           # two to spare, or LOO cannot judge the fit
        fits = []
        for subset, a_group, a_edge in itertools.product(subsets, (None,) + ALPHAS, (None,) + ALPHAS):
            free = np.column_stack([prior_ms[:, list(subset)], np.ones(len(x))])
            used = [True, a_group is not None, a_edge is not None]
            a = np.column_stack([b for b, u in zip((free, x @ groups, x), used) if u])
            penalty = np.concatenate([np.zeros(free.shape[1])]
                                     + ([np.full(groups.shape[1], a_group * len(y))] if used[1] else [])
                                     + ([np.full(ENCODING_SIZE, a_edge * len(y))] if used[2] else []))
            coef, loo = _solve(a, y, penalty)
            ape = np.abs(loo) / y
            score = float(ape.mean())
            # simplest first: one prior before several, no per-edge correction before one, no group correction
            # before one, stronger shrinkage; among equally simple fits (one prior or another), the better
            simplicity = (len(subset), used[2], used[1], -np.log10(a_edge or 1e9), -np.log10(a_group or 1e9), score)
            fits.append((simplicity, score, float(ape.std() / np.sqrt(len(y))), subset, a_group, a_edge, coef, loo))
        # the one-standard-error rule: the simplest fit whose leave-one-out error is within one standard error of
        # the best (choosing among 49 fits per prior set by their LOO error alone overfits the choice when rows are few)
        fits = [f for f in fits if np.isfinite(f[1])]
        if not fits:
            raise PredictorError(f"no transfer fit can be judged on these {len(y)} rows (each is interpolated): "
                                 "measure more architectures")
        best = min(fits, key=lambda f: f[1])
        _, score, _, subset, a_group, a_edge, coef, loo = min((f for f in fits if f[1] <= best[1] + best[2]),
                                                              key=lambda f: f[0])
        k = len(subset) + 1
        self.coef = np.zeros(len(self.priors) + 1)  # priors the fit did not choose keep a scale of 0
        self.coef[list(subset)] = coef[:k - 1]
        self.coef[-1] = coef[k - 1]
        rest = coef[k:]
        self.delta = np.zeros(ENCODING_SIZE)
        if a_group is not None:
            self.delta += groups @ rest[:groups.shape[1]]
            rest = rest[groups.shape[1]:]
        if a_edge is not None:
            self.delta += rest
        pred = self.predict_ms(x)
        self.interval_rel, self.interval_level = conformal_rel(loo / pred, self.params["level"])
        return {"loo_mape_pct": 100 * score, "group_ridge": a_group, "edge_ridge": a_edge, "priors_used": list(subset),
                "scales": self.coef[:-1].tolist(), "shift_ms": float(self.coef[-1])}

    def predict_ms(self, x: np.ndarray) -> np.ndarray:
        x = self._check_input(x).astype(np.float64)
        return sum(c * p.predict_ms(x) for c, p in self._chosen()) + self.coef[-1] + x @ self.delta

    def _chosen(self) -> list[tuple[float, Predictor]]:
        """(scale, prior) of the priors the fit chose; the others (scale 0) are never evaluated."""
        return [(float(c), p) for c, p in zip(self.coef, self.priors) if c != 0]

    def interval_ms(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ``level`` prediction interval (ms), from the leave-one-out residuals of the fit."""
        pred = self.predict_ms(x)
        return pred * (1 - self.interval_rel), pred * (1 + self.interval_rel)

    def torch_ms(self, x: torch.Tensor) -> torch.Tensor:
        if not self.differentiable:
            raise PredictorError("a transfer predictor is differentiable only if all its priors are (mlp, additive, "
                                 "groups)")
        x = x.to(torch.float32)
        out = sum(c * p.torch_ms(x) for c, p in self._chosen()) + float(self.coef[-1])
        return out + x @ torch.as_tensor(self.delta, dtype=torch.float32, device=x.device)

    def _save_weights(self, directory: Path) -> None:
        save_file({"coef": torch.from_numpy(self.coef), "delta": torch.from_numpy(self.delta),
                   "interval_rel": torch.tensor([self.interval_rel], dtype=torch.float64)},
                  str(directory / "weights.safetensors"))
        for i, prior in enumerate(self.priors):
            prior.save(directory / f"prior_{i}")

    def _load_weights(self, directory: Path) -> None:
        t = load_file(str(directory / "weights.safetensors"))
        self.coef, self.delta, self.interval_rel = t["coef"].numpy(), t["delta"].numpy(), float(t["interval_rel"][0])
        self.interval_level = float(self.meta.get("interval", {}).get("level", float("nan")))
        self.priors = [load_dir(p) for p in sorted(directory.glob("prior_*"), key=lambda p: int(p.name[6:]))]
