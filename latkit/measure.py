"""Measuring one model: build, prepare and time it on a backend (beside the reference in a duet); the row's columns.

Campaigns over many architectures are ``latkit.campaign``; this module is what each of their jobs does, and what
``latkit bench MODEL.onnx`` does once.
"""
from __future__ import annotations

import datetime as dt
import os
import socket
import time
import traceback
import uuid
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable, Iterator

from latkit.backends.base import Backend, ModelSource, Runner
from latkit.backends.timing import MeasureProtocol, Timing, measure
from latkit.datasets.store import (FORMAT, FORMAT_VERSION, REF_COLUMNS, STAGE_COLUMNS, STAT_COLUMNS, check_out_path,
                                   open_writer)
from latkit.env import fingerprint
from latkit.errors import LatkitError, one_line
from latkit.network import NetConfig, Network, build
from latkit.space import ENCODING_VERSION, PUBLISHED, SAMPLER_VERSION, Genotype

REFERENCE = "DARTS_V2"
MEASURE_COLUMNS = STAT_COLUMNS + ("n",) + STAGE_COLUMNS + ("attempts",) + REF_COLUMNS + ("ratio",)

# Exceptions that mean a bug in latkit or a backend adapter, not a property of the architecture measured: raised
# while building, preparing or timing one, they stop the campaign (MeasurementBug) instead of becoming error rows
# (which would fill the dataset with the same bug, once per architecture). LookupError covers KeyError and IndexError.
PROGRAMMING_ERRORS: tuple[type[Exception], ...] = (TypeError, NameError, AttributeError, AssertionError, ImportError,
                                                   LookupError, NotImplementedError)


class MeasurementBug(LatkitError):
    """A programming error (one of ``PROGRAMMING_ERRORS``) while measuring an architecture: the run stops."""

    @classmethod
    def of(cls, backend: Backend, what: str, exc: BaseException) -> "MeasurementBug":
        """One line: backend, what was measured, the exception's type and message, its innermost file:line."""
        frames = traceback.extract_tb(exc.__traceback__)
        where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
        return cls(f"{backend.name}/{backend.device}, {what}: {type(exc).__name__}: {one_line(exc)}{where}; a "
                   "programming error, not a property of the architecture: the run stops (rows already written are "
                   "kept)")


class ReferenceFailure(LatkitError):
    """The backend cannot prepare or run the reference model: nothing can be measured beside it."""


def now() -> str:
    """The current time (UTC, ISO 8601, milliseconds): a row's timestamp."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def environment(backend: Backend, protocol: MeasureProtocol) -> dict[str, Any]:
    """The fingerprint rows are measured in: machine, backend versions, threads."""
    env = fingerprint(backend.device)
    env.update(backend.versions())
    env["threads"] = protocol.threads
    return env


def campaign_header(backend: Backend, config: NetConfig, protocol: MeasureProtocol, seed: int) -> dict[str, Any]:
    """The dataset header: what the rows were measured with."""
    env = environment(backend, protocol)
    return {"format": FORMAT, "version": FORMAT_VERSION, "backend": backend.name, "device": backend.device,
            "device_name": backend.device_name(), "config": config.to_dict(), "protocol": protocol.to_dict(),
            "backend_options": backend.options(), "seed": seed, "sampler_version": SAMPLER_VERSION,
            "encoding_version": ENCODING_VERSION, "reference": REFERENCE, "environment": env}


def run_provenance(env: dict[str, Any], protocol: MeasureProtocol) -> dict[str, Any]:
    """What one run of a campaign was measured with: environment, protocol, the CPUs this process may run on
    (``os.sched_getaffinity``, None where unknown), host and start time (UTC)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"environment": env, "protocol": protocol.to_dict(), "cpus": cpus, "host": socket.gethostname(),
            "started": now()}


def reference_source(config: NetConfig) -> ModelSource:
    """The campaigns' reference model: DARTS_V2 at the campaign's network configuration."""
    source = ModelSource.of(build(PUBLISHED[REFERENCE], config))
    source.name = REFERENCE
    return source


class Reference:
    """The duet's reference model on one backend, with the backend's options and the campaign's protocol.

    Where runners persist it is prepared once and every model is prepared beside it (on CUDA: on its stream);
    where preparing invalidates earlier runners (torch.compile resets Dynamo), it is prepared beside each model
    instead. A reference the backend cannot prepare or run is a ``ReferenceFailure``, never an error row.
    """

    def __init__(self, backend: Backend, source: ModelSource):
        self.backend, self.source = backend, source
        self._runner: Runner | None = None

    def runner(self) -> Runner | None:
        """What a model is prepared beside: the reference's runner where runners persist, else None."""
        if not self.backend.persistent_runners:
            return None
        if self._runner is None:
            self._runner = self._prepare(None)
        return self._runner

    @contextmanager
    def beside(self, runner: Runner) -> Iterator[Runner]:
        """The reference runner to alternate with ``runner``. Where it is prepared beside each model, a failure here
        (after ``check`` passed: the reference runs alone) is that model's, e.g. memory the pair does not fit in."""
        if self.backend.persistent_runners:
            yield self.runner()
            return
        ref = self.backend.prepare(self.source, runner)
        try:
            yield ref
        finally:
            ref.close()

    def check(self, protocol: MeasureProtocol) -> None:
        """Prepare and time the reference once, alone: a campaign calls this before its first architecture."""
        runner = self.runner() or self._prepare(None)
        try:
            measure(runner, protocol)
        except Exception as exc:
            raise self._failure(exc) from exc
        finally:
            if runner is not self._runner:
                runner.close()

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
            self._runner = None

    def _prepare(self, beside: Runner | None) -> Runner:
        try:
            return self.backend.prepare(self.source, beside)
        except Exception as exc:
            raise self._failure(exc) from exc

    def _failure(self, exc: Exception) -> LatkitError:
        if isinstance(exc, PROGRAMMING_ERRORS):
            return MeasurementBug.of(self.backend, f"reference {self.source.name}", exc)
        return ReferenceFailure(f"{self.backend.name}/{self.backend.device} cannot run the reference "
                                f"{self.source.name}: {type(exc).__name__}: {one_line(exc)}")


def time_genotype(backend: Backend, genotype: Genotype, config: NetConfig, protocol: MeasureProtocol,
                  what: str = "architecture", reference: Reference | None = None) -> dict[str, Any]:
    """Build, prepare and time one architecture; returns the row's measurement columns (status 'error' on failure).
    A programming error raises ``MeasurementBug`` naming ``what`` (e.g. "sample 12")."""
    return time_model(backend, lambda: build(genotype, config), protocol, what, reference)


def time_model(backend: Backend, make: Callable[[], Network | ModelSource], protocol: MeasureProtocol,
               what: str = "model", reference: Reference | None = None) -> dict[str, Any]:
    """``make()`` the model (a network or an ONNX source: ``build_ms``), prepare it on the backend (export,
    compilation, and the reference beside it where it is prepared per model: ``prepare_ms``) and time it, in a
    duet with ``reference`` when one is given (its statistics from the same window in ``ref_*``, and ``ratio`` =
    ``min_ms / ref_min_ms``). The row's measurement columns; status 'error' when the model cannot be prepared or
    run (its message in ``error``). A programming error raises ``MeasurementBug``, a reference that fails
    ``ReferenceFailure``."""
    row: dict[str, Any] = {c: None for c in MEASURE_COLUMNS}
    t0 = time.perf_counter_ns()
    try:
        model = make()
        t1 = time.perf_counter_ns()
        with backend.prepare(model, None if reference is None else reference.runner()) as runner:
            with nullcontext() if reference is None else reference.beside(runner) as ref_runner:
                t2 = time.perf_counter_ns()
                timing = measure(runner, protocol, ref_runner)
                if timing.reference is not None and timing.reference.min_ms <= 0:
                    raise RuntimeError("the reference timed 0 ms: the clock cannot resolve it, no ratio")
    except (KeyboardInterrupt, SystemExit, ReferenceFailure, MeasurementBug):
        raise
    except Exception as exc:
        return error_columns(backend, what, exc, (time.perf_counter_ns() - t0) / 1e6)
    row.update(timing.stats.to_dict())
    row.update(status="ok", error="", build_ms=(t1 - t0) / 1e6, prepare_ms=(t2 - t1) / 1e6, **_loop_times(timing))
    if timing.reference is not None:
        row.update({f"ref_{c}": getattr(timing.reference, c) for c in STAT_COLUMNS},
                   ratio=timing.stats.min_ms / timing.reference.min_ms)
    return row


def error_columns(backend: Backend, what: str, exc: Exception, build_ms: float) -> dict[str, Any]:
    """The row's measurement columns for a model that could not be built, prepared or run (recorded, the campaign
    goes on); a programming error raises ``MeasurementBug`` instead."""
    if isinstance(exc, PROGRAMMING_ERRORS):
        raise MeasurementBug.of(backend, what, exc) from exc
    return failed_columns(f"{type(exc).__name__}: {one_line(exc, None)}", build_ms)


def failed_columns(error: str, build_ms: float | None = None) -> dict[str, Any]:
    """The measurement columns of a row with status 'error' and message ``error``."""
    row: dict[str, Any] = {c: None for c in MEASURE_COLUMNS}
    row.update(status="error", error=error[:500], n=0, build_ms=build_ms)
    return row


def _loop_times(timing: Timing) -> dict[str, float]:
    return {"warmup_ms": timing.warmup_ms, "timing_ms": timing.wall_ms, "timing_cpu_ms": timing.cpu_ms,
            "attempts": timing.attempts}


def default_dataset_name(backend: str, device: str, config: NetConfig) -> str:
    """File name of the dataset for a backend and configuration, e.g. ``onnxruntime_cpu_b1_r32_c36_l20.parquet``."""
    return f"{backend}_{device}_b{config.batch}_r{config.resolution}_c{config.channels}_l{config.layers}.parquet"


def reference_for(spec: str, model: ModelSource) -> ModelSource:
    """The reference a user's ``model`` is timed beside: an ONNX file (``.onnx``, its batch fixed to the model's
    where dynamic), or a genotype or published name built at the model's batch, and at its resolution where the model
    takes a square 3-channel image (else at the default 32)."""
    if spec.lower().endswith(".onnx"):
        from latkit.onnx_model import load_onnx

        return load_onnx(spec, model.input_shape[0])
    from latkit.space import parse

    shape = model.input_shape
    square = len(shape) == 4 and shape[1] == 3 and shape[2] == shape[3]
    config = NetConfig(batch=shape[0], **({"resolution": shape[2]} if square else {}))
    source = ModelSource.of(build(parse(spec), config))
    source.name = spec
    return source


def bench_header(backend: Backend, protocol: MeasureProtocol, source: ModelSource,
                 reference: ModelSource | None) -> dict[str, Any]:
    """The header of a file of ``latkit bench MODEL.onnx`` rows (kind 'model'): rows of one input shape, backend,
    options, protocol and reference share a file, whatever the model."""
    env = environment(backend, protocol)
    return {"format": FORMAT, "version": FORMAT_VERSION, "backend": backend.name, "device": backend.device,
            "device_name": backend.device_name(), "config": {"input_shape": list(source.input_shape)},
            "protocol": dict(protocol.to_dict(), duet=reference is not None), "backend_options": backend.options(),
            "seed": None, "sampler_version": SAMPLER_VERSION, "environment": env,
            "reference": None if reference is None else reference.name}


def bench_model(backend: Backend, source: ModelSource, protocol: MeasureProtocol, out: str | Path | None = None,
                reference: ModelSource | None = None) -> dict[str, Any]:
    """Time a user's model with the protocol, beside ``reference`` when given (then ``ratio`` is the model's
    latency in units of the reference's, from the same window); with ``out``, append the row (kind 'model'), a
    name that cannot be a dataset's refused before anything is timed."""
    if out is not None:
        check_out_path(out)
    backend.check_available()
    row = dict(kind="model", seed=None, genotype=source.name, backend=backend.name, device=backend.device,
               batch=source.input_shape[0], resolution=source.input_shape[-1] if len(source.input_shape) == 4 else None,
               channels=None, layers=None, timestamp=now())
    ref = None if reference is None else Reference(backend, reference)
    try:
        if ref is not None:
            ref.check(protocol)
        row.update(time_model(backend, lambda: source, protocol, what=source.name, reference=ref))
    finally:
        if ref is not None:
            ref.close()
    if out is not None:
        header = bench_header(backend, protocol, source, reference)
        writer, existing = open_writer(out, header, run_id=uuid.uuid4().hex[:12],
                                       run=run_provenance(header["environment"], protocol))
        try:
            kinds = [] if existing is None else existing.table.column("kind").to_pylist()
            writer.append(dict(row, index=kinds.count("model"), run_id=writer.run_id))
        finally:
            writer.close()
    return row
