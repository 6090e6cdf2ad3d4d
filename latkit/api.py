"""The Python API for people who bring their own search: time a model, load a predictor, penalise latency.

Everything here is also reachable as ``latkit.<name>``::

    stats = latkit.time_model("DARTS_V2", backend="onnxruntime")       # LatencyStats, every field in ms
    predictor = latkit.load_predictor("onnxruntime")                   # embedded, or a `latkit fit` directory
    penalty = latkit.LatencyPenalty(predictor, lam=0.1)                # loss, details = penalty(ce, (w_n, w_r))
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from latkit.backends.base import ModelSource

from latkit.backends.timing import LatencyStats, MeasureProtocol
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


CALIBRATION_WINDOWS = 5  # without anchors: duet windows of the reference; the fastest is "the reference here now"


def calibrate(predictor: Any, windows: int = CALIBRATION_WINDOWS) -> dict[str, Any]:
    """Scale a predictor's milliseconds to this machine, now.

    A predictor fitted on a duet dataset predicts normalised milliseconds: ratios to the reference timed beside
    each architecture, times the reference's baseline on the host that measured the dataset. Where the predictor
    records its dataset's anchors (architectures of typical size, ``Dataset.anchors``), each is timed here the way
    the dataset's rows were (its network configuration, backend, options and protocol, beside DARTS_V2), and the
    scale is the median of its latency here over its normalised latency there: one reference cannot stand for
    every architecture, whose ratio to it moves with the day and the process by up to a few % (RESULTS "A unit that
    holds across days"). Without anchors (a predictor fitted before them), DARTS_V2 is timed ``windows`` times and
    the scale is its fastest window over the baseline. Returns ``{"scale", "reference_ms", "baseline_ms",
    "anchors"}`` (how many anchors were timed, 0: the reference alone): multiply a prediction by ``scale`` for
    this machine's milliseconds. A search penalty needs none (it divides by the predicted DARTS_V2 latency).
    """
    import numpy as np

    from latkit.backends.registry import backend_class
    from latkit.measure import REFERENCE, Reference, reference_source, time_genotype
    from latkit.space import PUBLISHED

    meta = predictor.meta
    if not meta.get("normalised"):
        raise LatkitError(f"this {predictor.kind} predictor learned raw latencies ({meta.get('dataset', 'a dataset')} "
                          "was measured with the solo protocol): its milliseconds are its host's, nothing to calibrate")
    if windows < 1:
        raise LatkitError(f"calibration needs at least 1 window, got {windows}")
    known = set(MeasureProtocol.__dataclass_fields__)
    protocol = MeasureProtocol(**{k: v for k, v in meta.get("protocol", {}).items() if k in known})
    config = NetConfig(**meta["config"])
    backend = backend_class(meta["backend"])(meta["device"], protocol.threads, **meta.get("backend_options", {}))
    backend.check_available()
    anchors = meta.get("anchors") or []
    timed = [(parse(a["genotype"]), float(a["ms"])) for a in anchors] or [(PUBLISHED[REFERENCE], None)] * windows
    reference = Reference(backend, reference_source(config))  # one that cannot run raises ReferenceFailure
    try:
        rows = [time_genotype(backend, g, config, protocol, "calibration", reference) for g, _ in timed]
    finally:
        reference.close()
    failed = [r["error"] for r in rows if r["status"] != "ok"]
    if failed:
        raise LatkitError(f"{meta['backend']}/{meta['device']} cannot time the calibration here: {failed[0]}")
    stat, baseline = meta["stat"], float(meta["baseline_ms"])
    here = float(np.min([r[f"ref_{stat}"] for r in rows]))
    scale = float(np.median([r[stat] / ms for r, (_, ms) in zip(rows, timed)])) if anchors else here / baseline
    return {"scale": scale, "reference_ms": here, "baseline_ms": baseline, "anchors": len(anchors)}
