"""The DARTS search supernet: every edge a softmax-weighted mix of all ops of the one op table.

Follows ``model_search.py`` of the DARTS reference code (Liu et al. 2019): ops without BN affine parameters, a
BN(affine=False) after pooling ops, reductions at 1/3 and 2/3 of the depth, one (14, 8) alpha matrix for normal
cells and one for reduction cells.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from latkit.errors import LatkitError
from latkit.network import reduction_layers
from latkit.ops import OPS, FactorizedReduce, ReLUConvBN, parameter_free_ops
from latkit.space import CONCAT, EDGES_PER_CELL, NODES, PRIMITIVES, Genotype, edge_index

NONE = PRIMITIVES.index("none")


class MixedOp(nn.Module):
    """Weighted sum of every op of ``PRIMITIVES`` on one edge."""

    def __init__(self, c: int, stride: int):
        super().__init__()
        self.ops = nn.ModuleList()
        for name in PRIMITIVES:
            op = OPS[name](c, stride, False)
            if "pool" in name:
                op = nn.Sequential(op, nn.BatchNorm2d(c, affine=False))
            self.ops.append(op)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return sum(w * op(x) for w, op in zip(weights, self.ops))


class SearchCell(nn.Module):
    """A cell whose 14 edges are mixed ops; node ``i`` sums its edges from all earlier nodes."""

    def __init__(self, steps: int, multiplier: int, c_pp: int, c_p: int, c: int, reduction: bool,
                 reduction_prev: bool):
        super().__init__()
        self.reduction = reduction
        self.steps = steps
        self.multiplier = multiplier
        self.preprocess0 = FactorizedReduce(c_pp, c, affine=False) if reduction_prev else \
            ReLUConvBN(c_pp, c, 1, 1, 0, affine=False)
        self.preprocess1 = ReLUConvBN(c_p, c, 1, 1, 0, affine=False)
        self.ops = nn.ModuleList(MixedOp(c, 2 if reduction and j < 2 else 1)
                                 for i in range(steps) for j in range(i + 2))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(self.steps):
            states.append(sum(self.ops[edge_index(i, j)](h, weights[edge_index(i, j)])
                              for j, h in enumerate(states)))
        return torch.cat(states[-self.multiplier:], dim=1)


class SuperNet(nn.Module):
    """Stem, ``layers`` search cells (reductions at 1/3 and 2/3), global pool, classifier; plus the alphas."""

    def __init__(self, channels: int = 16, layers: int = 8, classes: int = 10, in_channels: int = 3,
                 steps: int = 4, multiplier: int = 4, stem_multiplier: int = 3):
        super().__init__()
        if steps != NODES or multiplier != len(CONCAT):
            raise LatkitError(f"the DARTS space fixes steps={NODES} and multiplier={len(CONCAT)}, "
                              f"got steps={steps}, multiplier={multiplier}")
        if layers < 3:
            raise LatkitError(f"layers must be >= 3 (reductions sit at 1/3 and 2/3 of the depth), got {layers}")
        if channels < 2 or channels % 2:
            raise LatkitError(f"channels must be even and >= 2 (factorized reduction halves them), got {channels}")
        self.config = dict(channels=channels, layers=layers, classes=classes, in_channels=in_channels,
                           steps=steps, multiplier=multiplier, stem_multiplier=stem_multiplier)
        c_curr = stem_multiplier * channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr))
        c_pp, c_p, c_curr = c_curr, c_curr, channels
        self.cells = nn.ModuleList()
        reduction_prev = False
        reductions = reduction_layers(layers)
        for i in range(layers):
            reduction = i in reductions
            if reduction:
                c_curr *= 2
            self.cells.append(SearchCell(steps, multiplier, c_pp, c_p, c_curr, reduction, reduction_prev))
            reduction_prev = reduction
            c_pp, c_p = c_p, multiplier * c_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, classes)
        shape = (EDGES_PER_CELL, len(PRIMITIVES))
        self.alphas_normal = nn.Parameter(1e-3 * torch.randn(shape))
        self.alphas_reduce = nn.Parameter(1e-3 * torch.randn(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w_normal, w_reduce = self.arch_weights()
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, w_reduce if cell.reduction else w_normal)
        return self.classifier(self.global_pooling(s1).flatten(1))

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alphas_normal, self.alphas_reduce]

    def weights(self) -> list[nn.Parameter]:
        """Every parameter except the alphas (what the weight optimizer updates)."""
        alphas = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in alphas]

    def arch_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """softmax(alpha) over ops for the normal and the reduction cell, each (14, 8), differentiable."""
        return F.softmax(self.alphas_normal, dim=-1), F.softmax(self.alphas_reduce, dim=-1)

    def genotype(self, max_skip: int | None = None, max_free: int | None = None) -> Genotype:
        """The derived genotype (``max_skip``, ``max_free``: bounds on the normal cell's skips and parameter-free
        ops, ``derive_genotype``)."""
        w_normal, w_reduce = (w.detach().cpu().numpy() for w in self.arch_weights())
        return derive_genotype(w_normal, w_reduce, max_skip, max_free)

    def new(self) -> "SuperNet":
        """A fresh supernet of the same shape, on the same device, with a copy of these alphas."""
        model = SuperNet(**self.config).to(self.alphas_normal.device)
        with torch.no_grad():
            for mine, theirs in zip(model.arch_parameters(), self.arch_parameters()):
                mine.copy_(theirs)
        return model


def _derive_cell(weights: np.ndarray) -> list[tuple[str, int]]:
    """DARTS' parse: per node the 2 inputs with the strongest non-'none' op, each with that op."""
    gene = []
    for node in range(NODES):
        rows = [weights[edge_index(node, j)] for j in range(node + 2)]
        strength = [max(w for k, w in enumerate(row) if k != NONE) for row in rows]
        inputs = sorted(range(node + 2), key=lambda j: -strength[j])[:2]  # stable: ties keep the lower input
        for j in inputs:
            best = max((k for k in range(len(PRIMITIVES)) if k != NONE), key=lambda k: (rows[j][k], -k))
            gene.append((PRIMITIVES[best], j))
    return gene


def derive_genotype(w_normal: np.ndarray, w_reduce: np.ndarray, max_skip: int | None = None,
                    max_free: int | None = None) -> Genotype:
    """The discrete genotype of (14, 8) architecture weights, exactly as DARTS derives it ('none' excluded).

    ``max_skip``: P-DARTS' rule against the collapse into skip connections (Chen et al., "Progressive
    Differentiable Architecture Search", ICCV 2019, section 3.3: "we keep the M skip-connections with the largest
    architecture weights" in the normal cell, M = 2, "and set the weights of the others to 0", then derive again).
    ``max_free``: the same rule over every parameter-free op (pools and skips): with a latency penalty the pools take
    the bounded skips' places, since any op without weights is the cheapest way to cut latency.
    """
    w_normal = np.array(w_normal, dtype=np.float64)
    free = set(parameter_free_ops())
    bounds = [(b, ops) for b, ops in ((max_skip, {"skip_connect"}), (max_free, free)) if b is not None]
    for bound, name in ((max_skip, "max_skip"), (max_free, "max_free")):
        if bound is not None and bound < 0:
            raise ValueError(f"{name} must be >= 0, got {bound}")
    normal = _derive_cell(w_normal)
    while True:
        over = next((ops for bound, ops in bounds if sum(op in ops for op, _ in normal) > bound), None)
        if over is None:
            break
        kept = [(edge_index(k // 2, j), PRIMITIVES.index(op)) for k, (op, j) in enumerate(normal) if op in over]
        w_normal[min(kept, key=lambda eo: w_normal[eo])] = 0.0  # the weakest kept op of the bounded kind
        normal = _derive_cell(w_normal)
    return Genotype.make(normal=normal, reduce=_derive_cell(np.asarray(w_reduce)))
