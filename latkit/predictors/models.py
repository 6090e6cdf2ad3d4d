"""The predictors: ``mlp`` (the paper's LPM), ``xgboost`` (baseline), ``additive`` (per-op lookup table), ``groups``
(the table with one cost per op group) and ``cse`` (the groups plus the ops a graph runtime merges)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from latkit.predictors.base import Predictor, PredictorError, register
from latkit.space import ENCODING_SIZE, merged_ops, op_groups


def _validation_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation) for early stopping, carved from the training data only."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(n * fraction)))
    return order[n_val:], order[:n_val]


def ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """Ridge least squares with an unpenalised intercept: (w, b) minimising |xw + b - y|^2 + alpha n |w|^2."""
    x = x.astype(np.float64)
    xm, ym = x.mean(0), float(y.mean())
    xc = x - xm
    w = np.linalg.solve(xc.T @ xc + alpha * len(x) * np.eye(x.shape[1]), xc.T @ (y - ym))
    return w, ym - float(xm @ w)


class _MLP(nn.Module):
    """A linear path plus ``depth`` hidden ReLU layers of ``width`` scaled by ``residual_scale`` (wide & deep).

    With ``skip``, the linear path is the ridge solution (latency is close to additive in the ops) and the hidden
    layers learn what it misses; their output layer starts at zero, so training starts from the linear model.
    """

    def __init__(self, width: int, depth: int, skip: bool):
        super().__init__()
        layers: list[nn.Module] = []
        width_in = ENCODING_SIZE
        for _ in range(depth):
            layers += [nn.Linear(width_in, width), nn.ReLU()]
            width_in = width
        layers.append(nn.Linear(width_in, 1))
        self.deep = nn.Sequential(*layers)
        self.linear = nn.Linear(ENCODING_SIZE, 1)
        self.linear.requires_grad_(bool(skip))
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        if skip:
            nn.init.zeros_(layers[-1].weight)
            nn.init.zeros_(layers[-1].bias)
        self.register_buffer("residual_scale", torch.ones(1))
        self.register_buffer("residual_shift", torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).squeeze(-1) + self.deep(x).squeeze(-1) * self.residual_scale + self.residual_shift


@register("mlp", min_rows=200, weights="weights.safetensors")
class MLPPredictor(Predictor):
    """The paper's LPM: a multi-layer regressor over the encoding, differentiable in its input.

    Target: milliseconds (``log_target`` False won the tuning); with ``skip`` the network is wide & deep (a
    ridge-fitted linear path plus the MLP on what it misses). Width, depth, target and early stopping were chosen by
    ``benchmarks/predictors.py --tune`` on a validation split carved from the training data (benchmarks/RESULTS.md).
    """

    differentiable = True
    DEFAULTS: dict[str, Any] = {"width": 128, "depth": 2, "log_target": False, "skip": True, "ridge": 1e-3,
                                "lr": 1e-3, "weight_decay": 1e-4, "batch_size": 128, "max_epochs": 600,
                                "patience": 40, "val_fraction": 0.1}

    def __init__(self, **params: Any):
        super().__init__(**{**self.DEFAULTS, **params})
        self.net = self._make_net()

    def _make_net(self) -> _MLP:
        return _MLP(int(self.params["width"]), int(self.params["depth"]), bool(self.params["skip"]))

    def fit(self, x: np.ndarray, y_ms: np.ndarray, seed: int = 0) -> dict[str, Any]:
        x = self._check_input(x)
        torch.manual_seed(seed)
        self.net = self._make_net()
        y = np.asarray(y_ms, dtype=np.float64)
        t = np.log(y) if self.params["log_target"] else y
        tr, va = _validation_split(len(x), self.params["val_fraction"], seed)
        with torch.no_grad():
            if self.params["skip"]:
                w, b = ridge(x[tr], t[tr], float(self.params["ridge"]))
                self.net.linear.weight.copy_(torch.from_numpy(w).reshape(1, -1))
                self.net.linear.bias.fill_(b)
                resid = t[tr] - (x[tr].astype(np.float64) @ w + b)
            else:
                resid = t[tr]
            self.net.residual_shift.fill_(float(resid.mean()))
            self.net.residual_scale.fill_(float(resid.std() or 1.0))
        xt, tt = torch.from_numpy(x), torch.tensor(t, dtype=torch.float32)
        params = [p for p in self.net.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.params["lr"], weight_decay=self.params["weight_decay"])
        gen = torch.Generator().manual_seed(seed)
        scale2 = float(self.net.residual_scale) ** 2

        def val_loss() -> float:
            self.net.eval()
            with torch.no_grad():
                return float(nn.functional.mse_loss(self.net(xt[va]), tt[va])) / scale2

        best, best_epoch = val_loss(), 0
        best_state = {k: v.clone() for k, v in self.net.state_dict().items()}
        epoch = 0
        for epoch in range(1, int(self.params["max_epochs"]) + 1):
            self.net.train()
            perm = torch.from_numpy(tr)[torch.randperm(len(tr), generator=gen)]
            for start in range(0, len(perm), int(self.params["batch_size"])):
                idx = perm[start: start + int(self.params["batch_size"])]
                loss = nn.functional.mse_loss(self.net(xt[idx]), tt[idx]) / scale2
                opt.zero_grad()
                loss.backward()
                opt.step()
            val = val_loss()
            if val < best:
                best, best_epoch = val, epoch
                best_state = {k: v.clone() for k, v in self.net.state_dict().items()}
            elif epoch - best_epoch >= int(self.params["patience"]):
                break
        self.net.load_state_dict(best_state)
        self.net.eval()
        return {"epochs": epoch, "best_epoch": best_epoch, "val_mse_residual_units": best}

    def torch_ms(self, x: torch.Tensor) -> torch.Tensor:
        t = self.net(x.to(torch.float32))
        return torch.exp(t) if self.params["log_target"] else t

    def predict_ms(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.torch_ms(torch.from_numpy(self._check_input(x))).numpy().astype(np.float64)

    def _save_weights(self, directory: Path) -> None:
        save_file({k: v.contiguous() for k, v in self.net.state_dict().items()}, str(self.weights_path(directory)))

    def _load_weights(self, directory: Path) -> None:
        self.net = self._make_net()
        self.net.load_state_dict(load_file(str(self.weights_path(directory))))
        self.net.eval()


@register("additive", min_rows=250, weights="weights.safetensors")  # 225 coefficients: more rows than those
class AdditivePredictor(Predictor):
    """One cost per (cell, edge, op) plus a constant, fitted to whole-network latencies by ridge least squares.

    The lookup-table model of FBNet/ProxylessNAS, learned from data; linear, hence differentiable.
    """

    differentiable = True
    DEFAULTS: dict[str, Any] = {"ridge": 1e-3}

    def __init__(self, **params: Any):
        super().__init__(**{**self.DEFAULTS, **params})
        self.w = np.zeros(ENCODING_SIZE)
        self.v = np.zeros(self._extra(np.zeros((1, ENCODING_SIZE))).shape[1])  # the costs of ``_extra``'s terms
        self.b = 0.0

    def _basis(self) -> np.ndarray | None:
        """The terms the costs are fitted on, as a ``(224, k)`` map from the encoding (None: one per edge and op)."""
        return None

    def _extra(self, x: Any) -> Any:
        """Terms beyond the per-edge costs, ``(n, m)`` (numpy or torch, like ``x``): none here."""
        return x[..., :0]

    def fit(self, x: np.ndarray, y_ms: np.ndarray, seed: int = 0) -> dict[str, Any]:
        x = self._check_input(x).astype(np.float64)
        y = np.asarray(y_ms, dtype=np.float64)
        basis = self._basis()
        linear = x if basis is None else x @ basis
        w, self.b = ridge(np.concatenate([linear, self._extra(x)], axis=1), y, float(self.params["ridge"]))
        k = linear.shape[1]
        self.w, self.v = (w[:k] if basis is None else basis @ w[:k]), w[k:]
        return {"train_rmse_ms": float(np.sqrt(np.mean((self.predict_ms(x) - y) ** 2)))}

    def predict_ms(self, x: np.ndarray) -> np.ndarray:
        x = self._check_input(x).astype(np.float64)
        return x @ self.w + self._extra(x) @ self.v + self.b

    def torch_ms(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float32)
        w, v = (torch.as_tensor(a, dtype=torch.float32, device=x.device) for a in (self.w, self.v))
        return x @ w + self._extra(x) @ v + self.b

    def _save_weights(self, directory: Path) -> None:
        tensors = {"w": torch.from_numpy(self.w.astype(np.float64)), "b": torch.tensor([self.b], dtype=torch.float64)}
        if self.v.size:
            tensors["v"] = torch.from_numpy(self.v.astype(np.float64))
        save_file(tensors, str(self.weights_path(directory)))

    def _load_weights(self, directory: Path) -> None:
        t = load_file(str(self.weights_path(directory)))
        v = t["v"].numpy() if "v" in t else np.zeros(0)
        if v.shape != self.v.shape or tuple(t["w"].shape) != (ENCODING_SIZE,):
            raise PredictorError(f"{directory}: {t['w'].numel()} per-edge costs and {v.size} extra ones, where a "
                                 f"{self.kind} predictor has {ENCODING_SIZE} and {self.v.size} (saved by another "
                                 "latkit version): refit it")
        self.w, self.v, self.b = t["w"].numpy(), v, float(t["b"][0])


@register("groups", min_rows=60, weights="weights.safetensors")
class OpGroupPredictor(AdditivePredictor):
    """One cost per op group: per cell type and op, whether the op reads a cell input or an intermediate node (28
    costs, ``space.op_groups``), plus a constant, by ridge least squares; saved, like the table, as per-edge costs.

    The table's 224 costs need thousands of rows to settle; these 28 settle from about a hundred. Where an op
    sits in the cell matters little for latency, which kind of op it is and what it reads matters most
    (benchmarks/RESULTS.md, "Is latency additive in the ops?"). Linear, hence differentiable."""

    def _basis(self) -> np.ndarray:
        return op_groups()


@register("cse", min_rows=80, weights="weights.safetensors")
class MergedOpsPredictor(OpGroupPredictor):
    """The op groups plus one cost per kind of op that a graph runtime merges (``space.merged_ops``: per cell type,
    source and key, the ReLUs and pools that common-subexpression elimination computes once for ops reading the
    same tensor), by ridge least squares, and a constant. onnxruntime merges them (OpenVINO at least the pools) and
    a per-op table cannot see it; eager torch runs every op (benchmarks/RESULTS.md, "Is latency additive in the
    ops?"). Differentiable: on the search's relaxed encodings the merged terms are their expectation."""

    def _extra(self, x: Any) -> Any:
        return merged_ops(x)


@register("xgboost", min_rows=200, weights="model.ubj")
class XGBoostPredictor(Predictor):
    """Gradient-boosted trees on the same encoding (log latency target); not differentiable."""

    DEFAULTS: dict[str, Any] = {"n_estimators": 2000, "max_depth": 6, "learning_rate": 0.05, "subsample": 0.8,
                                "colsample_bytree": 0.8, "early_stopping_rounds": 50, "val_fraction": 0.1}

    def __init__(self, **params: Any):
        super().__init__(**{**self.DEFAULTS, **params})
        self.model = None

    def _regressor(self, seed: int) -> Any:
        import xgboost as xgb

        p = {k: v for k, v in self.params.items() if k != "val_fraction"}
        return xgb.XGBRegressor(**p, random_state=seed, n_jobs=2, tree_method="hist")

    def fit(self, x: np.ndarray, y_ms: np.ndarray, seed: int = 0) -> dict[str, Any]:
        x = self._check_input(x)
        t = np.log(np.asarray(y_ms, dtype=np.float64))
        tr, va = _validation_split(len(x), self.params["val_fraction"], seed)
        self.model = self._regressor(seed)
        self.model.fit(x[tr], t[tr], eval_set=[(x[va], t[va])], verbose=False)
        return {"trees": int(self.model.best_iteration) + 1}

    def predict_ms(self, x: np.ndarray) -> np.ndarray:
        if self.model is None:
            raise PredictorError("the xgboost predictor is not fitted")
        return np.exp(self.model.predict(self._check_input(x)).astype(np.float64))

    def _save_weights(self, directory: Path) -> None:
        self.model.get_booster().save_model(str(self.weights_path(directory)))

    def _load_weights(self, directory: Path) -> None:
        import xgboost as xgb

        self.model = xgb.XGBRegressor()
        self.model.load_model(str(self.weights_path(directory)))


def timed_fit(predictor: Predictor, x: np.ndarray, y_ms: np.ndarray, seed: int = 0) -> tuple[dict[str, Any], float]:
    """Fit and return (report, seconds)."""
    t0 = time.perf_counter()
    report = predictor.fit(x, y_ms, seed)
    return report, time.perf_counter() - t0
