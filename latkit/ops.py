"""The one op table of the DARTS space: name -> factory(channels, stride, affine) -> nn.Module.

The evaluation network, the search supernet and the encoding all read this table; the encoding's op order is
the table's order (``PRIMITIVES``). Module classes follow the DARTS reference implementation (Liu et al. 2019).
"""
from __future__ import annotations

import functools
from typing import Callable

import torch
from torch import nn


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv -> BN, used for cell preprocessing."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU -> dilated depthwise conv -> pointwise conv -> BN."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, dilation: int,
                 affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride, padding, dilation=dilation, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked (ReLU -> depthwise -> pointwise -> BN) blocks; only the first one strides."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride, padding, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_in, 1, bias=False),
            nn.BatchNorm2d(c_in, affine=affine),
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, 1, padding, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class Zero(nn.Module):
    """The 'none' op: zeros of the (strided) input shape, no parameters. The supernet mixes it; an evaluation
    network skips a 'none' edge and runs it only for a node whose two edges are both 'none'."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """Halve the resolution with two offset stride-2 1x1 convs, concatenated, then BN."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True):
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


OpFactory = Callable[[int, int, bool], nn.Module]

OPS: dict[str, OpFactory] = {
    "none": lambda c, stride, affine: Zero(stride),
    "max_pool_3x3": lambda c, stride, affine: nn.MaxPool2d(3, stride=stride, padding=1),
    "avg_pool_3x3": lambda c, stride, affine: nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False),
    "skip_connect": lambda c, stride, affine: nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine),
    "sep_conv_3x3": lambda c, stride, affine: SepConv(c, c, 3, stride, 1, affine),
    "sep_conv_5x5": lambda c, stride, affine: SepConv(c, c, 5, stride, 2, affine),
    "dil_conv_3x3": lambda c, stride, affine: DilConv(c, c, 3, stride, 2, 2, affine),
    "dil_conv_5x5": lambda c, stride, affine: DilConv(c, c, 5, stride, 4, 2, affine),
}


def parameter_free_ops() -> tuple[str, ...]:
    """The ops of ``OPS`` without weights (pools, skip, none), read off the op table itself: the cheapest way for a
    latency-aware search to cut latency, and the ops DARTS collapses into."""
    return tuple(name for name, make in OPS.items() if not any(True for _ in make(4, 1, False).parameters()))


@functools.lru_cache(maxsize=None)
def merge_key(name: str, stride: int) -> str | None:
    """What a graph runtime's common-subexpression elimination can share between ops of ``OPS`` that read the same
    tensor: 'relu' for an op that opens with a ReLU (the ReLU is computed once for all of them), the op's own name
    for a pooling op (two of them on one input are one op), None for the rest (weights make each op unique; an
    identity or a zero costs nothing to merge). Read off the op table's modules, so it follows the table. Not
    covered: two FactorizedReduce skips on one input also share their Slice."""
    module = OPS[name](4, stride, False)
    if isinstance(module, FactorizedReduce):
        first: nn.Module | None = module.relu  # its forward opens with it
    else:
        first = next(iter(module.children()), None) if isinstance(module, nn.Sequential) else module
    if isinstance(first, nn.ReLU):
        return "relu"
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        return name
    return None
