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

Several targets (a model deployed on more than one runtime): ``LAT / reference_ms`` becomes the combination of each
target's ``LAT_i / reference_i`` (each predictor's own DARTS_V2 latency): their ``sum`` (each target penalised as a
single-target search with the same ``lam`` would; DARTS_V2 scores the number of targets) or the ``worst`` (the
largest ratio, so the search works on whichever runtime is slowest relative to DARTS_V2). The relative form takes
one target.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import torch

from latkit.errors import LatkitError
from latkit.predictors.base import differentiable_kinds
from latkit.space import PUBLISHED, encode

FORMS = ("additive", "relative", "log")
COMBINE = ("sum", "worst")


def check_lambda(lam: float) -> None:
    """A balancing coefficient is a finite number >= 0 (0: plain DARTS)."""
    if not math.isfinite(lam) or lam < 0:
        raise LatkitError(f"lambda must be a finite number >= 0, got {lam}")


class LatencyPenalty:
    """``penalty(ce_loss, arch_weights) -> (loss, details)``; details hold ``latency_ms`` and ``penalty``.

    ``predictor`` is one predictor or a list of them (several targets, combined by ``combine``); ``predictor`` the
    attribute is the first, whose latency ``latency_ms`` and the details report."""

    def __init__(self, predictor: Any, lam: float, form: str = "additive", reference_ms: Optional[float] = None,
                 target_ms: Optional[float] = None, predictor_device: str = "cpu", combine: str = "sum"):
        if form not in FORMS:
            raise LatkitError(f"unknown latency penalty form {form!r} (known: {', '.join(FORMS)})")
        if combine not in COMBINE:
            raise LatkitError(f"unknown way to combine targets {combine!r} (known: {', '.join(COMBINE)})")
        check_lambda(lam)
        for name, value in (("target latency", target_ms), ("reference latency", reference_ms)):
            if value is not None and not math.isfinite(value):
                raise LatkitError(f"{name} must be a finite number, got {value}")
        self.predictors = list(predictor) if isinstance(predictor, (list, tuple)) else [predictor]
        self.predictor = self.predictors[0]
        self.lam = float(lam)
        self.form = form
        self.combine = combine
        self.predictor_device = predictor_device
        self.target_ms = None if target_ms is None else float(target_ms)
        self.reference_ms = None if reference_ms is None else float(reference_ms)
        self.references_ms: list[float] = []
        if self.lam == 0:
            return  # plain DARTS: the predictor is never called
        if any(p is None for p in self.predictors):
            raise LatkitError("a latency penalty with lambda > 0 needs a latency predictor")
        for p in self.predictors:
            if not getattr(p, "differentiable", False):
                kind = getattr(p, "kind", type(p).__name__)
                raise LatkitError(f"the {kind} predictor is not differentiable: penalise with one of: "
                                  f"{', '.join(differentiable_kinds())}")
        if len(self.predictors) > 1 and (form == "relative" or reference_ms is not None):
            raise LatkitError("several targets are each normalised by their predictor's DARTS_V2 latency: use the "
                              "additive or log form, without a reference or target latency")
        if form == "relative":
            if self.target_ms is None:
                raise LatkitError("the 'relative' penalty needs a target latency (target_ms)")
            if self.target_ms <= 0:
                raise LatkitError(f"target latency must be > 0 ms, got {self.target_ms}")
        elif self.reference_ms is None:
            self.references_ms = [self.reference_latency(p) for p in self.predictors]
            self.reference_ms = self.references_ms[0]
        else:
            self.references_ms = [self.reference_ms]
        if any(r <= 0 for r in self.references_ms):
            raise LatkitError(f"reference latency must be > 0 ms, got {min(self.references_ms)}")

    def reference_latency(self, predictor: Any = None) -> float:
        """A predictor's (default: the first) latency of DARTS_V2 (one-hot encoding), in ms."""
        x = torch.from_numpy(encode(PUBLISHED["DARTS_V2"])).to(self.predictor_device)
        with torch.no_grad():
            return float((predictor or self.predictor).torch_ms(x).reshape(-1)[0])

    def latency_ms(self, arch_weights: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Differentiable predicted latency (scalar, ms) on the first target of the relaxed architecture
        ``(w_normal, w_reduce)``."""
        return self._latencies_ms(arch_weights, self.predictors[:1])[0]

    def _latencies_ms(self, arch_weights: tuple[torch.Tensor, torch.Tensor], predictors: list[Any]) -> list[torch.Tensor]:
        x = encode(arch_weights).to(device=self.predictor_device, dtype=torch.float32)
        return [p.torch_ms(x).reshape(()) for p in predictors]

    def ratio(self, arch_weights: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(``LAT / reference_ms``, or with several targets the sum or the worst of each target's ratio; the first
        target's latency in ms)."""
        lats = self._latencies_ms(arch_weights, self.predictors)
        ratios = torch.stack([lat / ref for lat, ref in zip(lats, self.references_ms)])
        return (ratios.sum() if self.combine == "sum" else ratios.max()), lats[0]

    def __call__(self, ce_loss: torch.Tensor,
                 arch_weights: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        if self.lam == 0:
            return ce_loss, {"latency_ms": None, "penalty": 0.0}
        if self.form == "relative":
            lat = self.latency_ms(arch_weights).to(ce_loss.device)
            loss = ce_loss + self.lam * torch.abs(lat / self.target_ms - 1)
            return loss, {"latency_ms": float(lat.detach()), "penalty": float((loss - ce_loss).detach())}
        ratio, lat = self.ratio(arch_weights)
        ratio = ratio.to(ce_loss.device)
        loss = ce_loss + self.lam * ratio if self.form == "additive" else ce_loss * ratio ** self.lam
        return loss, {"latency_ms": float(lat.detach()), "penalty": float((loss - ce_loss).detach())}

    def settings(self) -> dict[str, Any]:
        """What identifies this penalty in a checkpoint (resuming needs the same)."""
        def describe(predictor: Any) -> dict[str, Any]:
            meta = getattr(predictor, "meta", None) or {}
            kind = getattr(predictor, "kind", None) if predictor is not None else None
            return {"predictor": kind, "backend": meta.get("backend"), "device": meta.get("device")}

        doc = {"lam": self.lam, "form": self.form, "reference_ms": self.reference_ms, "target_ms": self.target_ms,
               **describe(self.predictor)}
        if len(self.predictors) > 1:
            doc.update(combine=self.combine, targets=[dict(describe(p), reference_ms=r)
                                                      for p, r in zip(self.predictors, self.references_ms)])
        return doc
