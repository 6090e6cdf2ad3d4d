"""The latency term of the search's validation loss: ``CE`` combined with ``LAT(softmax(alpha))``.

``LAT`` is a differentiable latency predictor evaluated on the *relaxed architecture*: the expected encoding of the
genotype that softmax(alpha) describes (``latkit.space.relaxed_encoding``). Each edge's op is drawn from its
non-'none' weights renormalised, and each node keeps 2 of its input edges, drawn without replacement in proportion
to their DARTS strength (the largest non-'none' weight), as the final derivation keeps the 2 strongest. 'none' is
never an op of a genotype, so no dataset can tell what it costs; in this definition it matters only through which
edges a node is likely to keep. The relaxed latency is therefore identified by genotype data alone: it is exactly
the expected latency for a linear predictor, any two predictors that agree on every genotype agree on it, and as
alpha sharpens toward a genotype it converges to that genotype's predicted latency.

Forms (``lam`` is the balancing coefficient; ``lam == 0`` is plain DARTS):

- ``additive`` (default): ``CE + lam * LAT / reference_ms``; the reference defaults to the predictor's latency of
  DARTS_V2, so ``lam`` is unit-free.
- ``relative``: ``CE + lam * |LAT / target_ms - 1|`` (TF-NAS); ``target_ms`` is required.
- ``log``: ``CE * (LAT / reference_ms) ** lam``, i.e. ``log loss = log CE + lam * log(LAT / ref)``
  (multiplicative, as in FBNet and ProxylessNAS).
"""
from __future__ import annotations

import math
from typing import Any, Optional

import torch

from latkit.errors import LatkitError
from latkit.space import PUBLISHED, encode

FORMS = ("additive", "relative", "log")


class LatencyPenalty:
    """``penalty(ce_loss, arch_weights) -> (loss, details)``; details hold ``latency_ms`` and ``penalty``."""

    def __init__(self, predictor: Any, lam: float, form: str = "additive", reference_ms: Optional[float] = None,
                 target_ms: Optional[float] = None, predictor_device: str = "cpu"):
        if form not in FORMS:
            raise LatkitError(f"unknown latency penalty form {form!r} (known: {', '.join(FORMS)})")
        for name, value in (("lambda", lam), ("target latency", target_ms), ("reference latency", reference_ms)):
            if value is not None and not math.isfinite(value):
                raise LatkitError(f"{name} must be a finite number, got {value}")
        if lam < 0:
            raise LatkitError(f"lambda must be >= 0, got {lam}")
        self.predictor = predictor
        self.lam = float(lam)
        self.form = form
        self.predictor_device = predictor_device
        self.target_ms = None if target_ms is None else float(target_ms)
        self.reference_ms = None if reference_ms is None else float(reference_ms)
        if self.lam == 0:
            return  # plain DARTS: the predictor is never called
        if predictor is None:
            raise LatkitError("a latency penalty with lambda > 0 needs a latency predictor")
        if not getattr(predictor, "differentiable", False):
            kind = getattr(predictor, "kind", type(predictor).__name__)
            raise LatkitError(f"the {kind} predictor is not differentiable: penalise with mlp or additive")
        if form == "relative":
            if self.target_ms is None:
                raise LatkitError("the 'relative' penalty needs a target latency (target_ms)")
            if self.target_ms <= 0:
                raise LatkitError(f"target latency must be > 0 ms, got {self.target_ms}")
        elif self.reference_ms is None:
            self.reference_ms = self.reference_latency()
        if self.reference_ms is not None and self.reference_ms <= 0:
            raise LatkitError(f"reference latency must be > 0 ms, got {self.reference_ms}")

    def reference_latency(self) -> float:
        """The predictor's latency of DARTS_V2 (one-hot encoding), in ms."""
        x = torch.from_numpy(encode(PUBLISHED["DARTS_V2"])).to(self.predictor_device)
        with torch.no_grad():
            return float(self.predictor.torch_ms(x).reshape(-1)[0])

    def latency_ms(self, arch_weights: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Differentiable predicted latency (scalar, ms) of the relaxed architecture ``(w_normal, w_reduce)``."""
        x = encode(arch_weights).to(device=self.predictor_device, dtype=torch.float32)
        return self.predictor.torch_ms(x).reshape(())

    def __call__(self, ce_loss: torch.Tensor,
                 arch_weights: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        if self.lam == 0:
            return ce_loss, {"latency_ms": None, "penalty": 0.0}
        lat = self.latency_ms(arch_weights).to(ce_loss.device)
        if self.form == "additive":
            loss = ce_loss + self.lam * lat / self.reference_ms
        elif self.form == "relative":
            loss = ce_loss + self.lam * torch.abs(lat / self.target_ms - 1)
        else:
            loss = ce_loss * (lat / self.reference_ms) ** self.lam
        return loss, {"latency_ms": float(lat.detach()), "penalty": float((loss - ce_loss).detach())}

    def settings(self) -> dict[str, Any]:
        """What identifies this penalty in a checkpoint (resuming needs the same)."""
        meta = getattr(self.predictor, "meta", None) or {}
        kind = getattr(self.predictor, "kind", None) if self.predictor is not None else None
        return {"lam": self.lam, "form": self.form, "reference_ms": self.reference_ms, "target_ms": self.target_ms,
                "predictor": kind, "backend": meta.get("backend"), "device": meta.get("device")}
