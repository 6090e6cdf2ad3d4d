"""The evaluation network built from a genotype (DARTS ``NetworkCIFAR`` without auxiliary head or drop-path)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from latkit.errors import LatkitError
from latkit.ops import OPS, FactorizedReduce, ReLUConvBN, Zero
from latkit.space import Edge, Genotype, edge_stride


@dataclass(frozen=True)
class NetConfig:
    """Shape of the evaluation network and of its input; defaults are the DARTS CIFAR-10 setting."""

    layers: int = 20
    channels: int = 36
    resolution: int = 32
    in_channels: int = 3
    classes: int = 10
    batch: int = 1

    def __post_init__(self) -> None:
        for name in ("layers", "channels", "resolution", "in_channels", "classes", "batch"):
            if getattr(self, name) < 1:
                raise LatkitError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.layers < 3:
            raise LatkitError(f"layers must be >= 3 (reductions sit at 1/3 and 2/3 of the depth), got {self.layers}")
        if self.resolution % 4:
            raise LatkitError(f"resolution must be a multiple of 4 (two stride-2 reductions), got {self.resolution}")
        if self.channels % 2:
            raise LatkitError(f"channels must be even (factorized reduction halves them), got {self.channels}")

    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.in_channels, self.resolution, self.resolution)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def reduction_layers(layers: int) -> tuple[int, int]:
    """Indices of the two reduction cells: 1/3 and 2/3 of the depth."""
    return layers // 3, 2 * layers // 3


class Cell(nn.Module):
    """One DARTS cell: preprocess both inputs, 4 nodes of 2 ops each, concat of nodes 2..5.

    A 'none' edge (the zero op) is not computed: its node is the other edge's output, and a node whose edges are
    both 'none' is its first edge's ``Zero`` op, zeros of the node's shape. ``nodes`` lists the edges each node
    evaluates (the ONNX writer reads it too).
    """

    def __init__(self, edges: tuple[Edge, ...], concat: tuple[int, ...], c_pp: int, c_p: int, c: int,
                 reduction: bool, reduction_prev: bool):
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = FactorizedReduce(c_pp, c) if reduction_prev else ReLUConvBN(c_pp, c, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(c_p, c, 1, 1, 0)
        self.indices = [j for _, j in edges]
        self.concat = list(concat)
        self.ops = nn.ModuleList(OPS[op](c, edge_stride(reduction, j), True) for op, j in edges)
        self.nodes = [[k for k in (a, a + 1) if not isinstance(self.ops[k], Zero)] or [a]
                      for a in range(0, len(self.ops), 2)]
        self.multiplier = len(concat)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for edges in self.nodes:
            outs = [self.ops[k](states[self.indices[k]]) for k in edges]
            states.append(outs[0] + outs[1] if len(outs) == 2 else outs[0])
        return torch.cat([states[i] for i in self.concat], dim=1)


class Network(nn.Module):
    """Stem (3x3 conv + BN), ``layers`` cells with reductions at 1/3 and 2/3, global pool, linear classifier."""

    def __init__(self, genotype: Genotype, config: NetConfig = NetConfig()):
        super().__init__()
        self.genotype = genotype
        self.config = config
        c = config.channels
        c_curr = 3 * c
        self.stem = nn.Sequential(nn.Conv2d(config.in_channels, c_curr, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(c_curr))
        c_pp, c_p, c_curr = c_curr, c_curr, c
        self.cells = nn.ModuleList()
        reduction_prev = False
        reductions = reduction_layers(config.layers)
        for i in range(config.layers):
            reduction = i in reductions
            if reduction:
                c_curr *= 2
            edges, concat = (genotype.reduce, genotype.reduce_concat) if reduction else \
                (genotype.normal, genotype.normal_concat)
            cell = Cell(edges, concat, c_pp, c_p, c_curr, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            c_pp, c_p = c_p, cell.multiplier * c_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, config.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(self.global_pooling(s1).flatten(1))


def build(genotype: Genotype, config: NetConfig = NetConfig()) -> Network:
    """The evaluation network in eval mode (inference: BN uses running statistics)."""
    return Network(genotype, config).eval()


def count_params(model: nn.Module) -> int:
    """Number of parameters (classifier included)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: Network) -> int:
    """Multiply-accumulates of one forward pass at the config's batch size (convolutions and linear layers)."""
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += output.numel() * (module.in_channels // module.groups) * kh * kw
        else:
            total += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model(torch.zeros(model.config.input_shape()))
    finally:
        for h in handles:
            h.remove()
    return total
