"""Measurement campaigns: sample architectures, time each on a backend, append to its dataset (resumable)."""
from __future__ import annotations

import datetime as dt
import os
import random
import socket
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from latkit.backends.base import Backend, MeasureProtocol, ModelSource, Timing, measure
from latkit.datasets.store import STAGE_COLUMNS, STAT_COLUMNS, FORMAT, FORMAT_VERSION, Dataset, open_writer
from latkit.env import fingerprint
from latkit.errors import LatkitError
from latkit.network import NetConfig, Network, build
from latkit.space import ENCODING_VERSION, PUBLISHED, SAMPLER_VERSION, Genotype, sample

REFERENCE = "DARTS_V2"

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
        message = " ".join(str(exc).split())[:300]
        return cls(f"{backend.name}/{backend.device}, {what}: {type(exc).__name__}: {message}{where}; a programming "
                   "error, not a property of the architecture: the run stops (rows already written are kept)")


@dataclass(frozen=True)
class Shard:
    """Shard ``k`` of ``n`` (1-based): sample indices ``i`` with ``i % n == k - 1``."""

    k: int = 1
    n: int = 1

    @classmethod
    def parse(cls, text: str) -> "Shard":
        try:
            k, n = (int(x) for x in text.split("/"))
        except ValueError:
            raise LatkitError(f"--shard must look like K/N (e.g. 2/4), got {text!r}") from None
        if not 1 <= k <= n:
            raise LatkitError(f"--shard K/N needs 1 <= K <= N, got {text!r}")
        return cls(k, n)

    def __contains__(self, index: int) -> bool:
        return index % self.n == self.k - 1


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
            "started": _now()}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def time_genotype(backend: Backend, genotype: Genotype, config: NetConfig, protocol: MeasureProtocol,
                  what: str = "architecture") -> dict[str, Any]:
    """Build, prepare and time one architecture; returns the row's measurement columns (status 'error' on failure).
    A programming error raises ``MeasurementBug`` naming ``what`` (e.g. "sample 12")."""
    return time_model(backend, lambda: build(genotype, config), protocol, what)


def time_model(backend: Backend, make: Callable[[], Network | ModelSource], protocol: MeasureProtocol,
               what: str = "model") -> dict[str, Any]:
    """``make()`` the model (a network or an ONNX source: ``build_ms``), prepare it on the backend (export,
    compilation: ``prepare_ms``) and time it; the row's measurement columns, status 'error' when the model cannot be
    prepared or run (its message in ``error``). A programming error raises ``MeasurementBug``."""
    row: dict[str, Any] = {c: None for c in STAT_COLUMNS + STAGE_COLUMNS}
    t0 = time.perf_counter_ns()
    try:
        model = make()
        t1 = time.perf_counter_ns()
        with backend.prepare(model) as runner:
            t2 = time.perf_counter_ns()
            timing = measure(runner, protocol)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        return error_columns(backend, what, exc, (time.perf_counter_ns() - t0) / 1e6)
    row.update(timing.stats.to_dict())
    row.update(status="ok", error="", build_ms=(t1 - t0) / 1e6, prepare_ms=(t2 - t1) / 1e6, **_loop_times(timing))
    return row


def error_columns(backend: Backend, what: str, exc: Exception, build_ms: float) -> dict[str, Any]:
    """The row's measurement columns for a model that could not be built, prepared or run (recorded, the campaign
    goes on); a programming error raises ``MeasurementBug`` instead."""
    if isinstance(exc, PROGRAMMING_ERRORS):
        raise MeasurementBug.of(backend, what, exc) from exc
    row: dict[str, Any] = {c: None for c in STAT_COLUMNS + STAGE_COLUMNS}
    row.update(status="error", error=f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:500], n=0,
               build_ms=build_ms)
    return row


def _loop_times(timing: Timing) -> dict[str, float]:
    return {"warmup_ms": timing.warmup_ms, "timing_ms": timing.wall_ms, "timing_cpu_ms": timing.cpu_ms,
            "attempts": timing.attempts}


Progress = Callable[[int, int, int], None]  # (done, total, failures)


@dataclass
class CampaignResult:
    measured: int
    failures: int
    skipped: int
    seconds: float
    retried: int = 0  # indices measured again because their only rows were errors (retry_errors)
    dropped_line: int | None = None  # a torn last journal line (a crash mid-write) cut off before appending
    set_aside: int = 0  # unreadable journal lines compaction moved to FILE.journal.rejected


class TooManyFailures(LatkitError):
    """``max_consecutive_failures`` architectures in a row failed: the backend, not the architectures, is broken."""


def _indices(ds: Dataset | None, ok_only: bool) -> set[int]:
    """Sample indices ``ds`` holds a row for (only ok rows with ``ok_only``)."""
    return set() if ds is None else set(ds.samples(ok_only=ok_only).column("index").to_pylist())


def plan(existing: Dataset | None, count: int, indices: list[int] | None, shard: Shard,
         retry_errors: bool) -> tuple[list[int], set[int], int, int]:
    """(indices to measure, indices done, how many are skipped as done, how many of the todo are retried errors)."""
    done = _indices(existing, ok_only=retry_errors)
    attempted = _indices(existing, ok_only=False)
    wanted = [i for i in (range(count) if indices is None else indices) if i in shard]
    todo = [i for i in wanted if i not in done]
    return todo, done, len(wanted) - len(todo), sum(i in attempted for i in todo)


def row_base(backend: str, device: str, config: NetConfig, seed: int, run_id: str) -> dict[str, Any]:
    """The columns every row of a campaign shares."""
    return {"seed": seed, "backend": backend, "device": device, "run_id": run_id,
            **{k: getattr(config, k) for k in ("batch", "resolution", "channels", "layers")}}


def repeat_of(seed: int, index: int, done: set[int]) -> int:
    """The earlier sample re-measured after ``index``: picked at random, often measured long ago, so the noise floor
    includes slow changes of the machine, not only run-to-run jitter."""
    return random.Random(f"{seed}:{index}").choice(sorted(done))


def run_campaign(backend: Backend, config: NetConfig, protocol: MeasureProtocol, *, seed: int, count: int,
                 out: str | Path, shard: Shard = Shard(), force: bool = False, reference_every: int = 100,
                 repeat_every: int = 20, retry_errors: bool = False, max_consecutive_failures: int = 10,
                 indices: list[int] | None = None, progress: Progress | None = None) -> CampaignResult:
    """Measure sample indices ``0..count-1`` (or ``indices``, e.g. from ``latkit.selection``) of ``shard`` that
    ``out`` does not hold yet (with ``retry_errors``,
    also those it holds only error rows for). Stops with ``TooManyFailures`` after ``max_consecutive_failures``
    failed architectures in a row (0: never), and with ``MeasurementBug`` on a programming error; ``out`` keeps
    every row written and is locked against other writers throughout."""
    if max_consecutive_failures < 0:
        raise LatkitError(f"max_consecutive_failures must be >= 0, got {max_consecutive_failures}")
    backend.check_available()
    header = campaign_header(backend, config, protocol, seed)
    run_id = uuid.uuid4().hex[:12]
    writer, existing = open_writer(out, header, force=force, run_id=run_id,
                                   run=run_provenance(header["environment"], protocol))
    failures, streak, start = 0, 0, time.perf_counter()
    reference = None
    try:
        todo, done, skipped, retried = plan(existing, count, indices, shard, retry_errors)
        base = row_base(backend.name, backend.device, config, seed, run_id)
        keep_reference = todo and reference_every > 0 and backend.persistent_runners
        reference = _prepare_reference(backend, config) if keep_reference else None

        def time_reference() -> None:
            row = dict(base, kind="reference", index=-1, genotype=str(PUBLISHED[REFERENCE]), timestamp=_now())
            writer.append(dict(row, **reference_columns(backend, config, protocol, reference)))

        def append(row: dict[str, Any]) -> None:
            """Write a sample or repeat row; stop after too many failures in a row."""
            nonlocal streak
            writer.append(row)
            streak = 0 if row["status"] == "ok" else streak + 1
            if max_consecutive_failures and streak >= max_consecutive_failures:
                raise TooManyFailures(f"stopped after {streak} consecutive failures on {backend.name}/{backend.device} "
                                      f"(last: {' '.join(row['error'].split())}); {out} keeps every row written, "
                                      "rerun to resume "
                                      "(--retry-errors measures the failed ones again)")

        if todo and reference_every > 0:
            time_reference()
        for pos, index in enumerate(todo):
            genotype = sample(seed, index)
            row = dict(base, kind="sample", index=index, genotype=str(genotype), timestamp=_now())
            row.update(time_genotype(backend, genotype, config, protocol, what=f"sample {index}"))
            failures += row["status"] != "ok"
            done.add(index)
            append(row)
            if repeat_every > 0 and (pos + 1) % repeat_every == 0:
                again = repeat_of(seed, index, done)
                g = sample(seed, again)
                append(dict(base, kind="repeat", index=again, genotype=str(g), timestamp=_now(),
                            **time_genotype(backend, g, config, protocol, what=f"repeat of sample {again}")))
            if reference_every > 0 and (pos + 1) % reference_every == 0:
                time_reference()
            if progress:
                progress(pos + 1, len(todo), failures)
    finally:
        if reference is not None:
            reference.close()
        writer.close()
    return CampaignResult(len(todo), failures, skipped, time.perf_counter() - start, retried, writer.dropped_line,
                          writer.set_aside)


def reference_columns(backend: Backend, config: NetConfig, protocol: MeasureProtocol,
                      reference: Any = None) -> dict[str, Any]:
    """Time the reference architecture (its runner ``reference``, or prepared afresh and closed): the row's
    measurement columns. A reference the backend cannot run stops the campaign."""
    runner = reference or _prepare_reference(backend, config)
    try:
        timing = measure(runner, protocol)
    except Exception as exc:
        raise _reference_error(backend, exc) from exc
    finally:
        if runner is not reference:
            runner.close()
    return dict(timing.stats.to_dict(), status="ok", error="", **_loop_times(timing))


def _prepare_reference(backend: Backend, config: NetConfig) -> Any:
    """The reference architecture, prepared once for the drift timings."""
    try:
        return backend.prepare(build(PUBLISHED[REFERENCE], config))
    except Exception as exc:
        raise _reference_error(backend, exc) from exc


def _reference_error(backend: Backend, exc: Exception) -> LatkitError:
    """Why the reference architecture stops the campaign: a programming error, or the backend cannot run it."""
    if isinstance(exc, PROGRAMMING_ERRORS):
        return MeasurementBug.of(backend, f"reference {REFERENCE}", exc)
    return LatkitError(f"{backend.name}/{backend.device} cannot run the reference {REFERENCE}: {type(exc).__name__}: "
                       f"{' '.join(str(exc).split())[:300]} (--reference-every 0 measures without it)")


def default_dataset_name(backend: str, device: str, config: NetConfig) -> str:
    """File name of the dataset for a backend and configuration, e.g. ``onnxruntime_cpu_b1_r32_c36_l20.parquet``."""
    return f"{backend}_{device}_b{config.batch}_r{config.resolution}_c{config.channels}_l{config.layers}.parquet"



def bench_header(backend: Backend, protocol: MeasureProtocol, source: ModelSource) -> dict[str, Any]:
    """The header of a file of ``latkit bench MODEL.onnx`` rows (kind 'model'): rows of one input shape, backend,
    options and protocol share a file, whatever the model."""
    env = environment(backend, protocol)
    return {"format": FORMAT, "version": FORMAT_VERSION, "backend": backend.name, "device": backend.device,
            "device_name": backend.device_name(), "config": {"input_shape": list(source.input_shape)},
            "protocol": protocol.to_dict(), "backend_options": backend.options(), "seed": None,
            "sampler_version": SAMPLER_VERSION, "environment": env}


def bench_model(backend: Backend, source: ModelSource, protocol: MeasureProtocol,
                out: str | Path | None = None) -> dict[str, Any]:
    """Time a user's model with the protocol; with ``out``, append the row (kind 'model') to that file."""
    backend.check_available()
    row = dict(kind="model", seed=None, genotype=source.name, backend=backend.name, device=backend.device,
               batch=source.input_shape[0], resolution=source.input_shape[-1] if len(source.input_shape) == 4 else None,
               channels=None, layers=None, timestamp=_now())
    row.update(time_model(backend, lambda: source, protocol, what=source.name))
    if out is not None:
        header = bench_header(backend, protocol, source)
        writer, existing = open_writer(out, header, run_id=uuid.uuid4().hex[:12],
                                       run=run_provenance(header["environment"], protocol))
        try:
            kinds = [] if existing is None else existing.table.column("kind").to_pylist()
            writer.append(dict(row, index=kinds.count("model"), run_id=writer.run_id))
        finally:
            writer.close()
    return row
