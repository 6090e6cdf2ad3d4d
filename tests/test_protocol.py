"""The one timing loop and its statistics, checked with a fake clock whose durations are known."""
from __future__ import annotations

import pytest

from latkit.backends.timing import LatencyStats, MeasureProtocol, measure
from latkit.errors import LatkitError


class ScriptedRunner:
    """Counts runs; the fake clock returns the scripted duration of each run."""

    device = "cpu"

    def __init__(self, durations_ms: list[float]):
        self.durations = list(durations_ms)
        self.runs = 0

    def run(self) -> None:
        self.runs += 1

    def clock(self, fn) -> float:
        fn()
        return self.durations[self.runs - 1]


def test_stats_by_hand() -> None:
    s = LatencyStats.from_samples([5.0, 1.0, 4.0, 2.0, 3.0, 100.0, 6.0, 7.0])
    assert s.n == 8 and s.min_ms == 1.0 and s.median_ms == 4.5
    assert s.mean_ms == pytest.approx(128 / 8)
    # quartiles 2.75 and 6.25 -> middle values 3, 4, 5, 6
    assert s.iqm_ms == pytest.approx(4.5)
    assert s.p10_ms == pytest.approx(1.7) and s.p90_ms == pytest.approx(34.9)
    assert LatencyStats.from_samples([2.0]).std_ms == 0.0


def test_stats_reject_bad_samples() -> None:
    with pytest.raises(ValueError):
        LatencyStats.from_samples([])
    with pytest.raises(ValueError):
        LatencyStats.from_samples([1.0, float("nan")])


def test_warmup_by_count_then_repeats() -> None:
    runner = ScriptedRunner([50.0] * 3 + [1.0, 2.0, 3.0, 4.0])
    timing = measure(runner, MeasureProtocol(warmup_runs=3, warmup_ms=0, repeats=4, min_cpu_share=0), clock=runner.clock)
    assert timing.warmup_runs == 3 and timing.warmup_ms == 150.0
    assert runner.runs == 7 and timing.stats.n == 4 and timing.stats.median_ms == 2.5


def test_warmup_by_time_outlasts_count() -> None:
    # warm-up needs 1 run and 100 ms: the first runs take 30 ms each, so 4 runs (120 ms) are warm-up
    runner = ScriptedRunner([30.0] * 4 + [9.0, 11.0])
    timing = measure(runner, MeasureProtocol(warmup_runs=1, warmup_ms=100, repeats=2, min_cpu_share=0), clock=runner.clock)
    assert timing.warmup_runs == 4 and timing.stats.min_ms == 9.0 and timing.stats.n == 2


def test_protocol_validation() -> None:
    with pytest.raises(LatkitError):
        MeasureProtocol(repeats=0)
    with pytest.raises(LatkitError):
        MeasureProtocol(threads=0)


def test_disturbed_cpu_loop_is_timed_again() -> None:
    # wall clock advances 100 ns per timed loop; the thread got 40 ns of CPU in the first loop, 95 in the second
    runner = ScriptedRunner([10.0] * 2 + [30.0, 30.0] + [10.0, 11.0])
    wall, cpu = iter([0, 100, 100, 200]), iter([0, 40, 40, 135])
    protocol = MeasureProtocol(warmup_runs=2, warmup_ms=0, repeats=2, min_cpu_share=0.9, max_attempts=3)
    timing = measure(runner, protocol, clock=runner.clock, wall_clock=lambda: next(wall),
                     thread_clock=lambda: next(cpu))
    assert timing.attempts == 2 and timing.stats.min_ms == 10.0 and timing.cpu_ms / timing.wall_ms == 0.95


def test_gate_gives_up_after_max_attempts_and_keeps_the_best() -> None:
    runner = ScriptedRunner([20.0, 30.0, 12.0])
    wall, cpu = iter([0, 100, 100, 200, 200, 300]), iter([0, 50, 50, 80, 80, 120])
    protocol = MeasureProtocol(warmup_runs=0, warmup_ms=0, repeats=1, min_cpu_share=0.9, max_attempts=3)
    timing = measure(runner, protocol, clock=runner.clock, wall_clock=lambda: next(wall),
                     thread_clock=lambda: next(cpu))
    assert timing.attempts == 3 and timing.stats.min_ms == 20.0  # shares 50%, 30%, 40%: the first is kept


class SharedClock:
    """Two scripted runners on one fake clock: each run takes its runner's next duration times the host's speed
    factor at that moment, so a slow host state slows both programs of a duet alike."""

    def __init__(self, factors: list[float]):
        self.factors, self.calls, self.order = list(factors), 0, []

    def runner(self, name: str, cost_ms: float) -> "ScriptedRunner":
        clock = self

        class Timed(ScriptedRunner):
            def __init__(self) -> None:
                super().__init__([])

            def run(self) -> None:
                self.runs += 1
                clock.order.append(name)

        r = Timed()
        r.cost_ms = cost_ms
        return r

    def __call__(self, fn) -> float:
        fn()
        runner = fn.__self__
        factor = self.factors[min(self.calls // 2, len(self.factors) - 1)]  # one factor per round of two runs
        self.calls += 1
        return runner.cost_ms * factor


def test_duet_alternates_run_for_run_and_keeps_the_reference_stats() -> None:
    clock = SharedClock([1.0, 1.0, 1.0, 2.0, 3.0])  # warm-up round, then the host slows down round by round
    model, reference = clock.runner("m", 4.0), clock.runner("r", 2.0)
    protocol = MeasureProtocol(warmup_runs=1, warmup_ms=0, repeats=4, min_cpu_share=0)
    timing = measure(model, protocol, reference, clock=clock)
    assert clock.order == ["m", "r"] * 5  # warm-up included: every model run is followed by one of the reference
    assert timing.stats.n == timing.reference.n == 4
    assert [timing.stats.min_ms, timing.stats.p90_ms] == [4.0, pytest.approx(10.8)]
    assert [timing.reference.min_ms, timing.reference.median_ms] == [2.0, 3.0]
    assert timing.stats.min_ms / timing.reference.min_ms == 2.0  # the ratio is the model's cost in reference units


def test_solo_has_no_reference_stats() -> None:
    runner = ScriptedRunner([1.0, 2.0])
    timing = measure(runner, MeasureProtocol(warmup_runs=0, warmup_ms=0, repeats=2, min_cpu_share=0),
                     clock=runner.clock)
    assert timing.reference is None and runner.runs == 2


def test_duet_warms_the_model_alone_by_time_then_both_by_count() -> None:
    clock = SharedClock([1.0])
    model, reference = clock.runner("m", 4.0), clock.runner("r", 2.0)
    protocol = MeasureProtocol(warmup_runs=2, warmup_ms=10, repeats=1, min_cpu_share=0)
    timing = measure(model, protocol, reference, clock=clock)
    assert clock.order == ["m", "m", "m"] + ["m", "r"] * 2 + ["m", "r"]  # 12 ms alone, 2 rounds, 1 timed round
    assert timing.warmup_runs == 5 and timing.warmup_ms == 20.0
