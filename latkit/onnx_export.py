"""Fast ONNX export: the graph is written directly from the network's modules with ``onnx.helper``.

``torch.onnx.export`` traces the model, which takes seconds for a 20-cell network; a measurement campaign needs
one export per architecture. The network is made of a handful of module types, so each gets a small converter
here, BatchNorm folded into the preceding convolution (inference semantics, as ``torch.onnx.export`` does in eval
mode). ``tests/test_onnx_export.py`` proves the graph equal to the PyTorch network under ONNX Runtime.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from latkit.atomic import atomic_path
from latkit.errors import LatkitError
from latkit.network import Cell, Network
from latkit.ops import FactorizedReduce, Zero

if TYPE_CHECKING:
    import torch

OPSET = 17
IR_VERSION = 8  # readable by every ONNX Runtime and TensorRT release that supports opset 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


class _Graph:
    """Accumulates nodes and initializers with unique names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def const(self, array: np.ndarray, prefix: str = "w") -> str:
        name = self.name(prefix)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs: object) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d | None, channels: slice = slice(None)
          ) -> tuple[np.ndarray, np.ndarray | None]:
    """Conv weight (and bias) with an inference-mode BatchNorm folded in; ``channels`` picks the BN's slice
    that follows this conv (a factorized reduction concatenates two convs before one BN)."""
    w = conv.weight.detach().numpy().astype(np.float32)
    b = None if conv.bias is None else conv.bias.detach().numpy().astype(np.float64)
    if bn is None:
        return w, None if b is None else b.astype(np.float32)

    def stat(t: "torch.Tensor") -> np.ndarray:
        return t.detach().numpy().astype(np.float64)[channels]

    scale = 1.0 / np.sqrt(stat(bn.running_var) + bn.eps)
    if bn.affine:
        scale = scale * stat(bn.weight)
    shift = -stat(bn.running_mean) * scale + (stat(bn.bias) if bn.affine else 0.0)
    if b is not None:
        shift = shift + b * scale
    return (w * scale[:, None, None, None]).astype(np.float32), shift.astype(np.float32)


def _conv(g: _Graph, x: str, conv: nn.Conv2d, weight: np.ndarray, bias: np.ndarray | None) -> str:
    if isinstance(conv.padding, str):
        raise LatkitError(f"string padding {conv.padding!r} is not supported by the ONNX writer")
    inputs = [x, g.const(weight)] + ([] if bias is None else [g.const(bias, "b")])
    ph, pw = conv.padding
    return g.op("Conv", inputs, kernel_shape=list(conv.kernel_size), strides=list(conv.stride),
                pads=[ph, pw, ph, pw], dilations=list(conv.dilation), group=conv.groups)


def _sequential(g: _Graph, x: str, layers: list[nn.Module]) -> str:
    k = 0
    while k < len(layers):
        layer = layers[k]
        if isinstance(layer, nn.Conv2d):
            bn = layers[k + 1] if k + 1 < len(layers) and isinstance(layers[k + 1], nn.BatchNorm2d) else None
            x = _conv(g, x, layer, *_fold(layer, bn))
            k += 2 if bn is not None else 1
        else:
            x = _module(g, x, layer)
            k += 1
    return x


def _factorized_reduce(g: _Graph, x: str, fr: FactorizedReduce) -> str:
    x = g.op("Relu", [x])
    half = fr.conv_1.out_channels
    a = _conv(g, x, fr.conv_1, *_fold(fr.conv_1, fr.bn, slice(0, half)))
    starts = g.const(np.array([1, 1], np.int64), "starts")
    ends = g.const(np.array([2**62, 2**62], np.int64), "ends")
    axes = g.const(np.array([2, 3], np.int64), "axes")
    shifted = g.op("Slice", [x, starts, ends, axes])
    c = _conv(g, shifted, fr.conv_2, *_fold(fr.conv_2, fr.bn, slice(half, 2 * half)))
    return g.op("Concat", [a, c], axis=1)


def _module(g: _Graph, x: str, m: nn.Module) -> str:
    """Emit one module of the op table (or a cell preprocessing) and return its output name."""
    if isinstance(m, nn.Identity):
        return x
    if isinstance(m, nn.ReLU):
        return g.op("Relu", [x])
    if isinstance(m, nn.Sequential):
        return _sequential(g, x, list(m))
    if isinstance(m, nn.Conv2d):
        return _conv(g, x, m, *_fold(m, None))
    if isinstance(m, FactorizedReduce):
        return _factorized_reduce(g, x, m)
    if isinstance(m, nn.MaxPool2d):
        return g.op("MaxPool", [x], kernel_shape=[m.kernel_size] * 2, strides=[m.stride] * 2, pads=[m.padding] * 4)
    if isinstance(m, nn.AvgPool2d):
        return g.op("AveragePool", [x], kernel_shape=[m.kernel_size] * 2, strides=[m.stride] * 2,
                    pads=[m.padding] * 4, count_include_pad=int(m.count_include_pad))
    if isinstance(m, Zero):  # only for a node whose edges are both 'none': zeros of the strided input's shape
        if m.stride > 1:
            x = g.op("Slice", [x, g.const(np.array([0, 0], np.int64), "starts"),
                               g.const(np.array([2**62, 2**62], np.int64), "ends"),
                               g.const(np.array([2, 3], np.int64), "axes"),
                               g.const(np.array([m.stride, m.stride], np.int64), "steps")])
        return g.op("Mul", [x, g.const(np.array(0.0, np.float32), "zero")])
    raise LatkitError(f"the ONNX writer has no converter for {type(m).__name__}")


def _cell(g: _Graph, s0: str, s1: str, cell: Cell) -> str:
    states = [_module(g, s0, cell.preprocess0), _module(g, s1, cell.preprocess1)]
    for edges in cell.nodes:  # a 'none' edge is left out, as in Cell.forward
        outs = [_module(g, states[cell.indices[k]], cell.ops[k]) for k in edges]
        states.append(g.op("Add", outs) if len(outs) == 2 else outs[0])
    return g.op("Concat", [states[i] for i in cell.concat], axis=1)


def to_onnx(model: Network) -> onnx.ModelProto:
    """The network as an ONNX model (opset 17) with a fixed input shape ``config.input_shape()``."""
    g = _Graph()
    s0 = s1 = _module(g, INPUT_NAME, model.stem)
    for cell in model.cells:
        s0, s1 = s1, _cell(g, s0, s1, cell)
    pooled = g.op("Flatten", [g.op("GlobalAveragePool", [s1])], axis=1)
    fc = model.classifier
    g.nodes.append(helper.make_node(
        "Gemm", [pooled, g.const(fc.weight.detach().numpy()), g.const(fc.bias.detach().numpy(), "b")],
        [OUTPUT_NAME], transB=1))
    config = model.config
    graph = helper.make_graph(
        g.nodes, "latkit_network",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, list(config.input_shape()))],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [config.batch, config.classes])],
        initializer=g.initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="latkit")
    proto.ir_version = IR_VERSION
    proto.doc_string = str(model.genotype)
    return proto


def export(model: Network, path: str | Path) -> Path:
    """Write the network's ONNX file to ``path`` whole (a temporary file renamed over it): a full disk leaves no
    partial file, and says so in one line."""
    path = Path(path)
    data = to_onnx(model).SerializeToString()
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename and exc.filename != str(path) else ""
        raise LatkitError(f"cannot write {path} ({where}{exc.strerror or exc}); nothing was written") from None
    return path
