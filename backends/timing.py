"""The one timing loop: warm-up, synchronised repetitions, robust statistics, and the duet with a reference.

A measurement on a shared host is only as good as the host's speed while it ran, and a cloud VM changes speed for
reasons it cannot see (other tenants sharing L3 and memory bandwidth). The duet (Bulej et al., ICPE 2020) times a
fixed reference model in the same window, run for run alternating with the model: a slow period slows both, so
their ratio keeps what the model costs and drops what the host did (benchmarks/RESULTS.md, "The duet protocol").
"""
from __future__ import annotations

import math
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np

from latkit.backends.base import Runner
from latkit.errors import LatkitError


@dataclass(frozen=True)
class MeasureProtocol:
    """How one architecture is timed. Defaults chosen by ``benchmarks/noise.py`` and ``benchmarks/duet.py`` (see
    benchmarks/RESULTS.md)."""

    warmup_runs: int = 5
    warmup_ms: float = 200.0
    repeats: int = 30
    threads: int = 1
    # A CPU measurement on 1 thread whose timed loop got less than this share of a core (thread CPU time / wall
    # time) was disturbed by other work; it is timed again, up to max_attempts times in all.
    min_cpu_share: float = 0.9
    max_attempts: int = 3
    # Campaigns time every architecture beside the reference network, run for run (the duet); False: alone (the
    # solo protocol of the datasets measured before 2026-11-27, whose headers have no "duet" key).
    duet: bool = True

    def __post_init__(self) -> None:
        if self.repeats < 1 or self.warmup_runs < 0 or not 0 <= self.warmup_ms < math.inf or self.threads < 1 \
                or self.max_attempts < 1 or not 0 <= self.min_cpu_share <= 1:
            raise LatkitError(f"invalid protocol {asdict(self)}: repeats, threads and attempts must be >= 1, "
                              "warm-up a finite number >= 0, min_cpu_share in [0, 1]")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def name(self) -> str:
        return "duet" if self.duet else "solo"


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


Clock = Callable[[Callable[[], None]], float]


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
    was descheduled (a busy machine), which inflates the latency. ``reference``: the reference's statistics from
    the same window (a duet), else None.
    """

    stats: LatencyStats
    warmup_runs: int
    warmup_ms: float
    wall_ms: float
    cpu_ms: float
    attempts: int = 1
    reference: LatencyStats | None = None


def measure(runner: Runner, protocol: MeasureProtocol, reference: Runner | None = None, clock: Clock | None = None,
            wall_clock: Callable[[], int] = time.perf_counter_ns,
            thread_clock: Callable[[], int] = time.thread_time_ns) -> Timing:
    """The one timing loop: warm up until both the run count and the warm-up time are reached, then time
    ``repeats`` runs. With a ``reference`` runner (the duet; prepared beside ``runner``, so on CUDA it shares the
    stream) every timed run of the model is followed by one of the reference; the model warms up alone until its
    warm-up time is reached, then both for ``warmup_runs`` rounds, so both are warm when the timed loop starts.

    On a CPU with 1 thread the inference runs on this thread, so its CPU time over the loop's wall time is the share
    of a core it got; a loop below ``min_cpu_share`` is timed again (the best-share attempt is kept).
    """
    clock = clock or clock_for(runner)
    with ExitStack() as stack:
        for r in (reference, runner) if reference is not None else (runner,):  # the model's settings are current
            getattr(r, "activate", lambda: None)()
            stack.callback(getattr(r, "deactivate", lambda: None))

        def one_round() -> tuple[float, float | None]:
            ms = clock(runner.run)
            return ms, None if reference is None else clock(reference.run)

        warm_runs, warm_ms = 0, 0.0
        while warm_ms < protocol.warmup_ms:
            warm_ms += clock(runner.run)
            warm_runs += 1
        rounds = 0
        while warm_runs < protocol.warmup_runs or (reference is not None and rounds < protocol.warmup_runs):
            warm_ms += one_round()[0]
            warm_runs += 1
            rounds += 1
        gated = runner.device == "cpu" and protocol.threads == 1
        best: Timing | None = None
        for attempt in range(1, protocol.max_attempts + 1):
            wall0, cpu0 = wall_clock(), thread_clock()
            rounds = [one_round() for _ in range(protocol.repeats)]
            cpu_ms, wall_ms = (thread_clock() - cpu0) / 1e6, (wall_clock() - wall0) / 1e6
            samples = [s for pair in rounds for s in pair if s is not None]
            if not all(math.isfinite(s) and s >= 0 for s in samples):
                raise RuntimeError(f"clock returned invalid samples: {samples[:5]}")
            ref = None if reference is None else LatencyStats.from_samples([r for _, r in rounds])
            timing = Timing(LatencyStats.from_samples([m for m, _ in rounds]), warm_runs, warm_ms, wall_ms, cpu_ms,
                            attempt, ref)
            if best is None or cpu_ms / max(wall_ms, 1e-9) > best.cpu_ms / max(best.wall_ms, 1e-9):
                best = timing
            if not gated or cpu_ms >= protocol.min_cpu_share * wall_ms:
                break
    return Timing(best.stats, warm_runs, warm_ms, best.wall_ms, best.cpu_ms, attempt, best.reference)
