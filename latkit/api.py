"""The Python API for people who bring their own search: time a model, load a predictor, penalise latency.

Everything here is also reachable as ``latkit.<name>``::

    stats = latkit.time_model("DARTS_V2", backend="onnxruntime")       # LatencyStats, every field in ms
    predictor = latkit.load_predictor("onnxruntime")                   # embedded, or a `latkit fit` directory
    penalty = latkit.LatencyPenalty(predictor, lam=0.1)                # loss, details = penalty(ce, (w_n, w_r))
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from latkit.backends.base import LatencyStats, MeasureProtocol, ModelSource
from latkit.errors import LatkitError
from latkit.network import NetConfig, Network, build
from latkit.space import Genotype, parse


def time_model(model: Any, backend: str = "onnxruntime", device: str = "cpu", *, config: NetConfig = NetConfig(),
               input_shape: tuple[int, ...] | None = None, batch: int | None = None,
               protocol: MeasureProtocol = MeasureProtocol(), **options: str) -> LatencyStats:
    """Latency statistics (ms) of ``model`` on a backend, with latkit's protocol.

    ``model``: a genotype (a ``Genotype``, its string or JSON, or a published name) built at ``config``; a path to
    an ``.onnx`` file (``batch`` fixes a dynamic batch); a latkit ``Network``; or any torch module with its
    ``input_shape`` (torch backends only). ``options`` are the backend's settings, as ``--backend-option`` takes them. A model the backend cannot
    run raises a LatkitError with the backend's message.
    """
    from latkit.backends.registry import get_backend
    from latkit.measure import time_model as time_row
    from latkit.onnx_model import load_onnx

    runtime = get_backend(backend, device, protocol.threads, {k: str(v) for k, v in options.items()})
    runtime.check_available()
    if isinstance(model, (str, Path)) and str(model).lower().endswith(".onnx"):
        source = load_onnx(model, batch)
    elif isinstance(model, (Genotype, str)):
        genotype = model if isinstance(model, Genotype) else parse(model)
        source = ModelSource.of(build(genotype, config))
    elif isinstance(model, Network) and input_shape is None:
        source = ModelSource.of(model)
    elif input_shape is not None:
        source = ModelSource(tuple(input_shape), network=model.eval(), name=type(model).__name__)
    else:
        raise LatkitError("time_model takes a genotype, an .onnx path, or a torch module with input_shape")
    row = time_row(runtime, lambda: source, protocol, what=source.name)
    if row["status"] != "ok":
        raise LatkitError(f"{backend}/{device} cannot run {source.name}: {row['error']}")
    return LatencyStats(**{k: row[k] for k in LatencyStats.__dataclass_fields__})
