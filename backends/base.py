"""The backend interface and the one measurement protocol shared by every runtime.

A backend is split as in Polygraphy: ``prepare`` builds once (export, session or engine creation) and returns a
``Runner``; ``measure`` runs the one timing loop on it (warm-up by count and by time, synchronised repetitions,
robust statistics). Adapters implement only ``_available_impl``, ``versions`` and ``_prepare_impl``.
"""
from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import Callable, Iterator, Protocol as TypingProtocol

import numpy as np

from latkit.errors import LatkitError
from latkit.network import NetConfig, Network

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


class Runner(TypingProtocol):
    """One prepared architecture: ``run`` enqueues one inference on ``device``.

    A runner may also define ``activate()`` and ``deactivate()``: ``measure`` calls them around its whole loop
    (e.g. to set torch's thread count or the CUDA stream, and to restore the process's own afterwards). A CUDA
    runner has a dedicated ``stream`` (torch.cuda.Stream) on which it enqueues its work; the timing events are
    recorded on that stream.
    """

    device: str

    def run(self) -> None: ...


Clock = Callable[[Callable[[], None]], float]


@contextmanager
def activated(runner: Runner) -> Iterator[None]:
    """``runner.activate()`` ... ``runner.deactivate()`` where the runner has them."""
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


class Backend(ABC):
    """An inference runtime on a device. Construct through ``latkit.backends.registry.get_backend``."""

    name: str = ""
    devices: tuple[str, ...] = DEVICES

    def __init__(self, device: str = "cpu", threads: int = 1):
        if device not in self.devices:
            raise LatkitError(f"backend {self.name!r} runs on {', '.join(self.devices)}, not {device!r}")
        self.device = device
        self.threads = threads

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

    def prepare(self, model: Network) -> Runner:
        """Build everything needed to run ``model`` (eval mode, fixed input shape) once; time it many times."""
        return self._prepare_impl(model.eval(), model.config)

    def options(self) -> dict[str, object]:
        """Settings that change the latency beyond the protocol (e.g. TensorRT precision); part of a dataset's
        identity, so rows measured with other options never share a file."""
        return {}

    @abstractmethod
    def _available_impl(self) -> tuple[bool, str]: ...

    @abstractmethod
    def versions(self) -> dict[str, str]:
        """Library versions that decide the latency (runtime, and what it runs on)."""

    @abstractmethod
    def _prepare_impl(self, model: Network, config: NetConfig) -> Runner: ...

    def device_name(self) -> str:
        from latkit.env import device_name

        return device_name(self.device)
