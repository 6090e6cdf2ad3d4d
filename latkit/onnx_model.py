"""A user's own ONNX model as a ``ModelSource``: read, checked, its dynamic batch fixed (``latkit bench MODEL.onnx``)."""
from __future__ import annotations

import hashlib
from pathlib import Path

from latkit.backends.base import ModelSource
from latkit.errors import LatkitError


def load_onnx(path: str | Path, batch: int | None = None) -> ModelSource:
    """Read ``path`` as an ONNX model with one float32 input. A dynamic first dimension takes ``batch``; any other
    dynamic dimension (or a dynamic batch without ``batch``) is a LatkitError naming it."""
    import onnx
    from onnx import TensorProto

    path = Path(path)
    try:
        model = onnx.load_model_from_string(path.read_bytes())
    except OSError as exc:
        raise LatkitError(f"{path}: {exc.strerror or exc}") from None
    except Exception as exc:  # onnx raises DecodeError and others from protobuf
        raise LatkitError(f"{path} is not an ONNX model ({type(exc).__name__})") from None
    if not model.graph.node:
        raise LatkitError(f"{path} is not an ONNX model (no graph nodes)")
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise LatkitError(f"{path} has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); latkit times "
                          "models with one input")
    tensor = inputs[0].type.tensor_type
    if tensor.elem_type != TensorProto.FLOAT:
        raise LatkitError(f"{path}: input {inputs[0].name!r} is {TensorProto.DataType.Name(tensor.elem_type)}; latkit "
                          "feeds float32")
    if not tensor.shape.dim:  # a scalar, or a rank the model does not say: no batch to time a row by
        what = "is a scalar (rank 0)" if tensor.HasField("shape") else "has no shape"
        raise LatkitError(f"{path}: input {inputs[0].name!r} {what}; latkit times models whose input has a batch "
                          "dimension first")
    shape = []
    for axis, dim in enumerate(tensor.shape.dim):
        if dim.HasField("dim_value") and dim.dim_value > 0:
            if axis == 0 and batch is not None and dim.dim_value != batch:
                raise LatkitError(f"{path}: input {inputs[0].name!r} has a fixed batch of {dim.dim_value}, not {batch}")
            shape.append(dim.dim_value)
            continue
        name = dim.dim_param or "?"
        if axis != 0 or batch is None:
            hint = " (give it with --batch)" if axis == 0 else "; latkit fixes only the batch (--batch)"
            raise LatkitError(f"{path}: input {inputs[0].name!r} has a dynamic dimension {name!r} at axis {axis}{hint}")
        dim.Clear()
        dim.dim_value = batch
        shape.append(batch)
    data = model.SerializeToString()
    return ModelSource(tuple(shape), onnx_bytes=data,
                       name=f"{path.name} sha256:{hashlib.sha256(data).hexdigest()[:12]}")
