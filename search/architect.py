"""DARTS architecture updates: first order, and second order with the unrolled (one-step look-ahead) weights.

The validation objective is a callable ``objective(model, x, y) -> loss`` so that the latency penalty enters both
orders. The inner (training) loss of the unrolled step is the plain cross-entropy, as in DARTS.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

from latkit.errors import LatkitError
from latkit.search.supernet import SuperNet

Objective = Callable[[SuperNet, torch.Tensor, torch.Tensor], torch.Tensor]


def train_loss(model: SuperNet, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the supernet on a batch (the weights' objective)."""
    return F.cross_entropy(model(x), y)


def _flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


class Architect:
    """Updates the alphas of ``model`` with Adam on ``objective`` evaluated on validation batches."""

    def __init__(self, model: SuperNet, objective: Objective, lr: float = 3e-4,
                 betas: tuple[float, float] = (0.5, 0.999), weight_decay: float = 1e-3,
                 network_momentum: float = 0.9, network_weight_decay: float = 3e-4, r: float = 1e-2):
        self.model = model
        self.objective = objective
        self.optimizer = torch.optim.Adam(model.arch_parameters(), lr=lr, betas=betas, weight_decay=weight_decay)
        self.network_momentum = network_momentum
        self.network_weight_decay = network_weight_decay
        self.r = r
        self._unrolled: Optional[SuperNet] = None

    def step(self, x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
             eta: float, network_optimizer: torch.optim.Optimizer, order: int = 1) -> float:
        """One Adam step on the alphas; returns the validation objective's value."""
        if order == 1:
            loss = self.objective(self.model, x_val, y_val)
            grads = torch.autograd.grad(loss, self.model.arch_parameters())
        elif order == 2:
            loss, grads = self._unrolled_grads(x_train, y_train, x_val, y_val, eta, network_optimizer)
        else:
            raise LatkitError(f"order must be 1 (first-order DARTS) or 2 (second order, unrolled), got {order}")
        self.optimizer.zero_grad()
        for p, g in zip(self.model.arch_parameters(), grads):
            p.grad = g.detach().clone()
        self.optimizer.step()
        return float(loss.detach())

    def _unrolled_grads(self, x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor,
                        y_val: torch.Tensor, eta: float,
                        network_optimizer: torch.optim.Optimizer) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """dL_val(w', a)/da - eta * [d2 L_train / da dw] dL_val/dw', with w' = w - eta * (SGD step direction)."""
        model = self.model
        weights = model.weights()
        unrolled = self._unrolled_model(x_train, y_train, eta, network_optimizer)
        u_alphas, u_weights = unrolled.arch_parameters(), unrolled.weights()
        loss = self.objective(unrolled, x_val, y_val)
        grads = torch.autograd.grad(loss, u_alphas + u_weights, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(u_alphas + u_weights, grads)]
        dalpha, vector = grads[:len(u_alphas)], grads[len(u_alphas):]

        # Finite-difference Hessian-vector product (DARTS eq. 8), at w +- R * vector.
        radius = self.r / (_flat(vector).norm() + 1e-12)
        with torch.no_grad():
            for p, v in zip(weights, vector):
                p.add_(v, alpha=radius)
        grads_p = torch.autograd.grad(train_loss(model, x_train, y_train), model.arch_parameters())
        with torch.no_grad():
            for p, v in zip(weights, vector):
                p.sub_(v, alpha=2 * radius)
        grads_n = torch.autograd.grad(train_loss(model, x_train, y_train), model.arch_parameters())
        with torch.no_grad():
            for p, v in zip(weights, vector):
                p.add_(v, alpha=radius)
        implicit = [(gp - gn) / (2 * radius) for gp, gn in zip(grads_p, grads_n)]
        return loss, [g - eta * ig for g, ig in zip(dalpha, implicit)]

    def _unrolled_model(self, x: torch.Tensor, y: torch.Tensor, eta: float,
                        network_optimizer: torch.optim.Optimizer) -> SuperNet:
        """A copy of the model (same alphas) with weights after one virtual SGD step on the training batch."""
        model = self.model
        weights = model.weights()
        grads = torch.autograd.grad(train_loss(model, x, y), weights)
        if self._unrolled is None:
            self._unrolled = model.new()
            self._unrolled.train(model.training)
        unrolled = self._unrolled
        with torch.no_grad():
            for mine, theirs in zip(unrolled.arch_parameters(), model.arch_parameters()):
                mine.copy_(theirs)
            for p, g, target in zip(weights, grads, unrolled.weights()):
                buf = network_optimizer.state.get(p, {}).get("momentum_buffer")
                moment = torch.zeros_like(p) if buf is None else buf * self.network_momentum
                target.copy_(p - eta * (moment + g + self.network_weight_decay * p))
        return unrolled
