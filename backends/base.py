"""The backend interface and the one measurement protocol shared by every runtime.

A backend is split as in Polygraphy: ``prepare`` builds once (export, compilation, session or engine creation)
from a ``ModelSource`` and returns a ``Runner``, which owns its inputs, outputs and (on CUDA) stream until
``close()``; ``measure`` runs the one timing loop on it (warm-up by count and by time, synchronised repetitions,
robust statistics). Backends that read ONNX (``reads = "onnx"``) get the ONNX bytes only, so they time any ONNX
model as well as latkit's networks; torch backends (``reads = "network"``) need a latkit network. Settings that
change the latency beyond the protocol are the backend's ``Options`` dataclass, recorded in a dataset's identity.
Adapters implement only ``_available_impl``, ``versions`` and ``_prepare_impl``.
"""
from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Callable, ClassVar, Iterator

import numpy as np

from latkit.errors import LatkitError
from latkit.network import Network

DEVICES = ("cpu", "cuda")


class BackendUnavailable(LatkitError):
    """The backend's runtime or device is missing here; the message says which and why."""


@dataclass(frozen=True)
class MeasureProtocol:
    """How one architecture is timed. Defaults chosen by ``benchmarks/noise.py`` (see benchmarks/RESULTS.md)."""

    warmup_runs: int = 5
    warmup_ms: float = 200.0
    repeats: int = 30
    threads: int = 1
    # A CPU measurement on 1 thread whose timed loop got less than this share of a core (thread CPU time / wall
    # time) was disturbed by other work; it is timed again, up to max_attempts times in all.
    min_cpu_share: float = 0.9
    max_attempts: int = 3

    def __post_init__(self) -> None:
        if self.repeats < 1 or self.warmup_runs < 0 or not 0 <= self.warmup_ms < math.inf or self.threads < 1 \
                or self.max_attempts < 1 or not 0 <= self.min_cpu_share <= 1:
            raise LatkitError(f"invalid protocol {asdict(self)}: repeats, threads and attempts must be >= 1, "
                              "warm-up a finite number >= 0, min_cpu_share in [0, 1]")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class LatencyStats:
    """Statistics of the timed repetitions of one architecture, all in milliseconds."""

    median_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    p10_ms: float
    p90_ms: float
    iqm_ms: float
    n: int

    @classmethod
    def from_samples(cls, samples_ms: list[float]) -> "LatencyStats":
        x = np.sort(np.asarray(samples_ms, dtype=np.float64))
        if x.size == 0 or not np.all(np.isfinite(x)):
            raise ValueError("latency samples must be a non-empty list of finite numbers")
        k = x.size // 4  # interquartile mean: drop the lowest and highest quarter by rank
        middle = x[k: x.size - k]
        return cls(median_ms=float(np.median(x)), mean_ms=float(x.mean()), std_ms=float(x.std(ddof=1)) if x.size > 1
                   else 0.0, min_ms=float(x[0]), p10_ms=float(np.percentile(x, 10)),
                   p90_ms=float(np.percentile(x, 90)), iqm_ms=float(middle.mean()), n=int(x.size))

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


STAT_COLUMNS = tuple(f.name for f in fields(LatencyStats))


class Runner:
    """One prepared model: ``run`` enqueues one inference on ``device``.

    ``measure`` calls ``activate()`` and ``deactivate()`` around its whole loop (e.g. to set torch's thread count or
    the CUDA stream, and to give the process its own back afterwards). A CUDA runner has a dedicated ``stream``
    (torch.cuda.Stream) on which it enqueues its work; the timing events are recorded on that stream. ``close()``
    releases what the runner holds (session, engine, buffers); a runner is a context manager.
    """

    device: str = "cpu"
    stream: Any = None

    def run(self) -> None:
        raise NotImplementedError

    def activate(self) -> None:
        """Called before the timing loop."""

    def deactivate(self) -> None:
        """Called after the timing loop, also when it failed."""

    def close(self) -> None:
        """Release the prepared model."""

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class ModelSource:
    """What a backend prepares: a latkit evaluation network, or an ONNX model, and the input shape it runs at.

    The ONNX bytes of a network are written on first use (``onnx()``) and kept, so several ONNX backends share one
    export; ``digest`` is their SHA-256 (a cache key for compiled artifacts).
    """

    input_shape: tuple[int, ...]
    network: Network | None = None
    onnx_bytes: bytes | None = field(default=None, repr=False)
    name: str = "model"

    @classmethod
    def of(cls, network: Network) -> "ModelSource":
        return cls(tuple(network.config.input_shape()), network=network.eval(), name=str(network.genotype))

    def onnx(self) -> bytes:
        if self.onnx_bytes is None:
            from latkit.onnx_export import to_onnx

            self.onnx_bytes = to_onnx(self.network).SerializeToString()
        return self.onnx_bytes

    def digest(self) -> str:
        import hashlib

        return hashlib.sha256(self.onnx()).hexdigest()


Clock = Callable[[Callable[[], None]], float]


@contextmanager
def activated(runner: Runner) -> Iterator[None]:
    """``runner.activate()`` ... ``runner.deactivate()`` (a minimal runner with only ``run`` has neither)."""
    getattr(runner, "activate", lambda: None)()
    try:
        yield
    finally:
        getattr(runner, "deactivate", lambda: None)()


def host_clock(fn: Callable[[], None]) -> float:
    """Milliseconds of one synchronous call, by the host's monotonic high-resolution clock."""
    t0 = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - t0) / 1e6


def cuda_clock(stream: "torch.cuda.Stream") -> Clock:  # noqa: F821
    """A clock for work enqueued on ``stream``: milliseconds between CUDA events recorded on that stream."""
    import torch

    def clock(fn: Callable[[], None]) -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        stream.synchronize()
        start.record(stream)
        fn()
        end.record(stream)
        end.synchronize()
        return float(start.elapsed_time(end))

    return clock


def clock_for(runner: Runner) -> Clock:
    """CUDA events on the runner's own stream for a CUDA runner; the host clock otherwise."""
    if runner.device != "cuda":
        return host_clock
    stream = getattr(runner, "stream", None)
    if stream is None:
        raise LatkitError(f"{type(runner).__name__} runs on cuda without a dedicated stream to time")
    return cuda_clock(stream)


@dataclass(frozen=True)
class Timing:
    """A measurement: the statistics, what the warm-up cost, and the timed loop's wall and CPU time.

    ``cpu_ms / wall_ms`` near 1 means the measuring thread ran undisturbed; well below 1 on a CPU backend means it
    was descheduled (a busy machine), which inflates the latency.
    """

    stats: LatencyStats
    warmup_runs: int
    warmup_ms: float
    wall_ms: float
    cpu_ms: float
    attempts: int = 1


def measure(runner: Runner, protocol: MeasureProtocol, clock: Clock | None = None,
            wall_clock: Callable[[], int] = time.perf_counter_ns,
            thread_clock: Callable[[], int] = time.thread_time_ns) -> Timing:
    """The one timing loop: warm up until both the run count and the time are reached, then time ``repeats``.

    On a CPU with 1 thread the inference runs on this thread, so its CPU time over the loop's wall time is the share
    of a core it got; a loop below ``min_cpu_share`` is timed again (the best-share attempt is kept).
    """
    clock = clock or clock_for(runner)
    with activated(runner):
        warm_runs, warm_ms = 0, 0.0
        while warm_runs < protocol.warmup_runs or warm_ms < protocol.warmup_ms:
            warm_ms += clock(runner.run)
            warm_runs += 1
        gated = runner.device == "cpu" and protocol.threads == 1
        best: Timing | None = None
        for attempt in range(1, protocol.max_attempts + 1):
            wall0, cpu0 = wall_clock(), thread_clock()
            samples = [clock(runner.run) for _ in range(protocol.repeats)]
            cpu_ms, wall_ms = (thread_clock() - cpu0) / 1e6, (wall_clock() - wall0) / 1e6
            if not all(math.isfinite(s) and s >= 0 for s in samples):
                raise RuntimeError(f"clock returned invalid samples: {samples[:5]}")
            timing = Timing(LatencyStats.from_samples(samples), warm_runs, warm_ms, wall_ms, cpu_ms, attempt)
            if best is None or cpu_ms / max(wall_ms, 1e-9) > best.cpu_ms / max(best.wall_ms, 1e-9):
                best = timing
            if not gated or cpu_ms >= protocol.min_cpu_share * wall_ms:
                break
    return Timing(best.stats, warm_runs, warm_ms, best.wall_ms, best.cpu_ms, attempt)


@dataclass(frozen=True)
class NoOptions:
    """A backend without settings of its own."""


def parse_options(cls: type, given: dict[str, str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings (the CLI's ``--backend-option``) as typed values of the options dataclass ``cls``."""
    known = {f.name: f for f in fields(cls)}
    out: dict[str, Any] = {}
    for key, text in given.items():
        if key not in known:
            names = ", ".join(known) or "none"
            raise LatkitError(f"unknown backend option {key!r} (this backend's options: {names})")
        default = known[key].default if known[key].default is not MISSING else None
        if isinstance(default, bool):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise LatkitError(f"backend option {key} must be true or false, got {text!r}")
            out[key] = text.lower() in ("true", "1", "yes")
        elif isinstance(default, int):
            try:
                out[key] = int(text)
            except ValueError:
                raise LatkitError(f"backend option {key} must be an integer, got {text!r}") from None
        else:
            out[key] = text
    return out


class Backend(ABC):
    """An inference runtime on a device. Construct through ``latkit.backends.registry.get_backend``."""

    name: ClassVar[str] = ""
    devices: ClassVar[tuple[str, ...]] = DEVICES
    reads: ClassVar[str] = "onnx"  # "onnx": any ONNX model; "network": latkit's torch networks only
    extra: ClassVar[str] = ""  # the pip extra that installs the runtime, e.g. "openvino"
    # False where preparing a model invalidates runners prepared before (torch.compile resets Dynamo's caches):
    # a campaign then prepares its reference architecture afresh for each reference timing
    persistent_runners: ClassVar[bool] = True
    Options: ClassVar[type] = NoOptions

    def __init__(self, device: str = "cpu", threads: int = 1, **options: Any):
        if device not in self.devices:
            raise LatkitError(f"backend {self.name!r} runs on {', '.join(self.devices)}, not {device!r}")
        self.device = device
        self.threads = threads
        try:
            self.opts = self.Options(**options)
        except TypeError:
            names = ", ".join(f.name for f in fields(self.Options)) or "none"
            raise LatkitError(f"unknown option for backend {self.name!r} among {sorted(options)} "
                              f"(its options: {names})") from None
        self._check_options()

    def _check_options(self) -> None:
        """Refuse option values the backend cannot honour (a LatkitError)."""

    def availability(self) -> tuple[bool, str]:
        """(True, '') when usable here, else (False, every reason in one line)."""
        ok, reason = self._available_impl()
        reasons = [] if ok else [reason]
        if self.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                reasons.append("no CUDA GPU visible to torch")
        return not reasons, "; ".join(reasons)

    def check_available(self) -> None:
        ok, reason = self.availability()
        if not ok:
            raise BackendUnavailable(f"backend {self.name!r} on {self.device} is not available: {reason}")

    def prepare(self, source: ModelSource | Network) -> Runner:
        """Build everything needed to run ``source`` (a network in eval mode, or ONNX) once; time it many times."""
        if isinstance(source, Network):
            source = ModelSource.of(source)
        if self.reads == "network" and source.network is None:
            raise LatkitError(f"backend {self.name!r} times latkit networks, not ONNX files; time {source.name} with an "
                              "ONNX backend (onnxruntime, openvino, tensorrt)")
        return self._prepare_impl(source)

    def prebuild(self, source: ModelSource) -> ModelSource:
        """The work a builder does ahead of a measuring slot, on another core (``latkit measure --ray --builders``):
        here the ONNX bytes, for backends that read ONNX (the network then stays with the builder). A backend whose
        slow preparation a per-machine cache keeps overrides this to fill the cache."""
        if self.reads == "onnx":
            return ModelSource(source.input_shape, onnx_bytes=source.onnx(), name=source.name)
        return source

    def options(self) -> dict[str, Any]:
        """Settings that change the latency beyond the protocol (e.g. TensorRT precision); part of a dataset's
        identity, so rows measured with other options never share a file."""
        return asdict(self.opts)

    @abstractmethod
    def _available_impl(self) -> tuple[bool, str]: ...

    @abstractmethod
    def versions(self) -> dict[str, str]:
        """Library versions that decide the latency (runtime, and what it runs on)."""

    @abstractmethod
    def _prepare_impl(self, source: ModelSource) -> Runner: ...

    def device_name(self) -> str:
        from latkit.env import device_name

        return device_name(self.device)
