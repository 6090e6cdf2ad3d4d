"""Measurement campaigns: resume, shards, recorded failures, and a real kill -9 in the middle of a run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from latkit.backends.base import Backend, ModelSource, Runner

from latkit.backends.timing import MeasureProtocol
from latkit.cli import main
from latkit.datasets.quality import summary, validate
from latkit.datasets.store import journal_path, load, merge, open_writer
from latkit.errors import LatkitError
from latkit.campaign import Shard, TooManyFailures, run_campaign
from latkit.measure import MeasurementBug, ReferenceFailure
from latkit.network import NetConfig
from latkit.space import PUBLISHED, sample

TINY_ARGS = ["--layers", "3", "--channels", "4", "--resolution", "8", "--repeats", "3", "--warmup-runs", "1",
             "--warmup-ms", "0"]
TINY = NetConfig(layers=3, channels=4, resolution=8)
FAST = MeasureProtocol(warmup_runs=0, warmup_ms=0, repeats=2)
SOLO = MeasureProtocol(warmup_runs=0, warmup_ms=0, repeats=2, duet=False)


class _Runner(Runner):
    device = "cpu"

    def run(self) -> None:
        pass


class FakeBackend(Backend):
    """Instant 'inference'; fails to prepare any genotype whose normal cell starts with a max pool."""

    name = "fake"

    def _available_impl(self) -> tuple[bool, str]:
        return True, ""

    def versions(self) -> dict[str, str]:
        return {"fake": "1"}

    def _prepare_impl(self, source: ModelSource, beside: Runner | None = None) -> _Runner:
        if source.network.genotype.normal[0][0] == "max_pool_3x3":
            raise RuntimeError("unsupported by the fake runtime")
        return _Runner()


def _indices(path: Path, kind: str = "sample") -> list[int]:
    t = load(path).table
    return sorted(i for k, i in zip(t.column("kind").to_pylist(), t.column("index").to_pylist()) if k == kind)


def test_campaign_records_failures_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "fake.parquet"
    result = run_campaign(FakeBackend(), TINY, FAST, seed=0, count=12, out=out, repeat_every=4, reference_every=5)
    expected_failures = sum(sample(0, i).normal[0][0] == "max_pool_3x3" for i in range(12))
    assert expected_failures > 0
    assert (result.measured, result.failures, result.skipped) == (12, expected_failures, 0)
    assert _indices(out) == list(range(12))
    assert len(_indices(out, "repeat")) == 3 and len(_indices(out, "reference")) == 3
    errors = [e for e in load(out).table.column("error").to_pylist() if e]
    assert errors and all(e == "RuntimeError: unsupported by the fake runtime" for e in errors)
    again = run_campaign(FakeBackend(), TINY, FAST, seed=0, count=15, out=out)
    assert (again.measured, again.skipped) == (3, 12)
    assert _indices(out) == list(range(15))
    validate(out)


def test_shards_partition_and_merge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = []
    for k in (1, 2, 3):
        paths.append(tmp_path / f"s{k}.parquet")
        run_campaign(FakeBackend(), TINY, FAST, seed=2, count=10, out=paths[-1], shard=Shard(k, 3),
                     repeat_every=0, reference_every=0)
    assert _indices(paths[0]) == [0, 3, 6, 9] and _indices(paths[2]) == [2, 5, 8]
    merged = tmp_path / "all.parquet"
    assert main(["dataset", "merge", *map(str, paths), "--out", str(merged)]) == 0
    assert _indices(merged) == list(range(10))
    assert main(["dataset", "validate", str(merged)]) == 0
    assert main(["dataset", "info", str(merged)]) == 0
    assert "10 samples" in capsys.readouterr().out


@pytest.mark.parametrize("text", ["3", "0/2", "3/2", "a/b"])
def test_bad_shard(text: str) -> None:
    with pytest.raises(LatkitError, match="--shard"):
        Shard.parse(text)


def test_measure_cli_torch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "t.parquet"
    assert main(["measure", "--backend", "torch", "--count", "4", *TINY_ARGS, "--out", str(out)]) == 0
    assert "measured 4 architectures" in capsys.readouterr().out
    ds = validate(out)
    assert ds.header["backend"] == "torch" and ds.header["protocol"]["repeats"] == 3
    assert ds.header["environment"]["torch"]
    assert main(["dataset", "info", str(out), "--json"]) == 0
    assert '"samples_ok": 4' in capsys.readouterr().out


def test_measure_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["measure", "--backend", "tensorrt", "--device", "cuda", "--count", "2",
                 "--out", str(tmp_path / "x.parquet")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("latkit: error: backend 'tensorrt' on cuda is not available") and err.count("\n") == 1
    out = tmp_path / "t.parquet"
    assert main(["measure", "--backend", "torch", "--count", "1", *TINY_ARGS, "--out", str(out)]) == 0
    # same file, other protocol: refused, and the file keeps its row
    assert main(["measure", "--backend", "torch", "--count", "2", *TINY_ARGS[:-6], "--out", str(out)]) == 2
    assert "different protocol" in capsys.readouterr().err
    assert _indices(out) == [0]
    junk = tmp_path / "junk.parquet"
    junk.write_text("hello")
    assert main(["dataset", "validate", str(junk)]) == 2
    assert main(["dataset", "info", str(tmp_path / "none.parquet")]) == 2
    capsys.readouterr()
    assert main(["measure", "--backend", "torch", "--count", "2", "--burn-in-s", "-1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--burn-in-s" in err and "must be >= 0" in err and _indices(out) == [0]


def test_kill_9_loses_at_most_the_architecture_in_flight(tmp_path: Path) -> None:
    out = tmp_path / "k.parquet"
    count = 400
    cmd = [sys.executable, "-m", "latkit", "measure", "--backend", "torch", "--count", str(count), *TINY_ARGS,
           "--repeat-every", "0", "--reference-every", "0", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        jp = journal_path(out)
        if jp.exists() and jp.read_text().count("\n") >= 12:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _indices(out)
    assert 10 <= len(before) < count, "the kill must land in the middle of the campaign"
    assert before == list(range(len(before)))
    subprocess.run(cmd, check=True, capture_output=True)
    assert _indices(out) == list(range(count))  # exactly the missing ones were measured: no gaps, no duplicates
    validate(out)


class FixedBackend(FakeBackend):
    """The fake runtime after its max-pool bug was fixed: every architecture works."""

    def _prepare_impl(self, source: ModelSource, beside: Runner | None = None) -> _Runner:
        return _Runner()


class BrokenBackend(FakeBackend):
    """Every architecture fails, as on a backend whose device was lost."""

    def _prepare_impl(self, source: ModelSource, beside: Runner | None = None) -> _Runner:
        raise RuntimeError("device lost")


class _RaisingRunner(_Runner):
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def run(self) -> None:
        raise self.exc


class BuggyBackend(FakeBackend):
    """Raises ``exc`` for the ``nth`` architecture prepared (0-based), in ``prepare`` or in the timed ``run``."""

    def __init__(self, exc: Exception, nth: int, stage: str) -> None:
        super().__init__()
        self.exc, self.nth, self.stage, self.prepared = exc, nth, stage, 0

    def _prepare_impl(self, source: ModelSource, beside: Runner | None = None) -> _Runner:
        self.prepared += 1
        if self.prepared - 1 != self.nth:
            return _Runner()
        if self.stage == "prepare":
            raise self.exc
        return _RaisingRunner(self.exc)


def _statuses(path: Path) -> list[tuple[int, str]]:
    t = load(path).table
    return [(i, s) for k, i, s in zip(t.column("kind").to_pylist(), t.column("index").to_pylist(),
                                      t.column("status").to_pylist()) if k == "sample"]


def test_retry_errors_measures_failed_indices_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "fake.parquet"
    first = run_campaign(FakeBackend(), TINY, FAST, seed=0, count=12, out=out, repeat_every=0, reference_every=0)
    failed = sorted(i for i, s in _statuses(out) if s == "error")
    assert first.failures == len(failed) > 0
    plain = run_campaign(FixedBackend(), TINY, FAST, seed=0, count=12, out=out, repeat_every=0, reference_every=0)
    assert (plain.measured, plain.skipped) == (0, 12)  # without --retry-errors a failed index stays done
    again = run_campaign(FixedBackend(), TINY, FAST, seed=0, count=12, out=out, repeat_every=0, reference_every=0,
                         retry_errors=True)
    assert (again.measured, again.retried, again.failures, again.skipped) == (len(failed), len(failed), 0,
                                                                               12 - len(failed))
    rows = _statuses(out)
    assert [i for i, s in rows if s == "error"] == failed  # the error rows stay in the append-only file
    assert sorted(i for i, s in rows if s == "ok") == list(range(12))
    ds = validate(out)
    assert ds.samples().num_rows == 12
    s = summary(ds)
    assert (s["samples"], s["failures"], s["superseded"]) == (12, 0, len(failed))
    done = run_campaign(FixedBackend(), TINY, FAST, seed=0, count=12, out=out, retry_errors=True)
    assert done.measured == 0  # an ok row is never measured again
    assert main(["dataset", "info", str(out)]) == 0
    assert f"{len(failed)} error rows superseded by a retry" in capsys.readouterr().out


def test_campaign_stops_after_consecutive_failures(tmp_path: Path) -> None:
    out = tmp_path / "broken.parquet"
    with pytest.raises(TooManyFailures, match=r"stopped after 3 consecutive failures on fake/cpu \(last: "
                                              r"RuntimeError: device lost\)"):
        run_campaign(BrokenBackend(), TINY, SOLO, seed=0, count=10, out=out, repeat_every=0, reference_every=0,
                     max_consecutive_failures=3)
    assert _statuses(out) == [(0, "error"), (1, "error"), (2, "error")]  # kept, and compacted
    assert not journal_path(out).exists()
    never = run_campaign(BrokenBackend(), TINY, SOLO, seed=0, count=10, out=out, repeat_every=0, reference_every=0,
                         max_consecutive_failures=0)
    assert (never.measured, never.failures) == (7, 7)
    assert len(_statuses(out)) == 10


class DyingBackend(FakeBackend):
    """Prepares its first architecture, then the device is lost: every later one (repeats included) fails."""

    prepared = 0

    def _prepare_impl(self, source: ModelSource, beside: Runner | None = None) -> _Runner:
        self.prepared += 1
        if self.prepared > 1:
            raise RuntimeError("device lost")
        return _Runner()


def test_the_failure_streak_counts_architectures_not_repeats(tmp_path: Path) -> None:
    out = tmp_path / "dying.parquet"
    with pytest.raises(TooManyFailures, match="stopped after 3 consecutive failures"):
        run_campaign(DyingBackend(), TINY, SOLO, seed=0, count=10, out=out, repeat_every=1, reference_every=0,
                     max_consecutive_failures=3)
    # sample 0 ok, then samples 1, 2, 3 fail; the failed repeats of sample 0 between them are not architectures
    assert _statuses(out) == [(0, "ok"), (1, "error"), (2, "error"), (3, "error")]
    assert _indices(out, "repeat") == [0, 0, 0]


def test_failures_between_successes_do_not_stop_the_campaign(tmp_path: Path) -> None:
    out = tmp_path / "fake.parquet"
    result = run_campaign(FakeBackend(), TINY, FAST, seed=0, count=40, out=out, repeat_every=0, reference_every=0,
                          max_consecutive_failures=2)
    statuses = [s for _, s in _statuses(out)]
    assert result.measured == 40 and "error" in statuses
    assert not any(a == b == "error" for a, b in zip(statuses, statuses[1:])), "seed 0 must have no 2 failures in a row"


@pytest.mark.parametrize("exc, stage", [(TypeError("unsupported operand"), "prepare"),
                                        (AttributeError("'NoneType' object has no attribute 'run'"), "run"),
                                        (KeyError("conv_7x7"), "prepare")])
def test_programming_error_stops_the_run_and_keeps_rows(tmp_path: Path, exc: Exception, stage: str) -> None:
    out = tmp_path / "bug.parquet"
    with pytest.raises(MeasurementBug) as info:
        run_campaign(BuggyBackend(exc, 3, stage), TINY, SOLO, seed=0, count=10, out=out, repeat_every=0,
                     reference_every=0, max_consecutive_failures=0)
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, LatkitError)
    assert message.startswith(f"fake/cpu, sample 3: {type(exc).__name__}: {' '.join(str(exc).split())} at ")
    assert f"{Path(__file__).name}:" in message  # the innermost frame: where the bug is
    assert [i for i, _ in _statuses(out)] == [0, 1, 2]  # no error row for the bug, every finished row kept
    assert not journal_path(out).exists()
    validate(out)


def test_reference_failure_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(LatkitError, match="fake/cpu cannot run the reference DARTS_V2: RuntimeError: device lost"):
        run_campaign(BrokenBackend(), TINY, FAST, seed=0, count=2, out=tmp_path / "r.parquet")
    with pytest.raises(MeasurementBug, match="fake/cpu, reference DARTS_V2: TypeError"):
        run_campaign(BuggyBackend(TypeError("x"), 0, "run"), TINY, FAST, seed=0, count=2, out=tmp_path / "r.parquet")


def test_runs_keep_their_provenance_through_resume_and_merge(tmp_path: Path) -> None:
    out = tmp_path / "fake.parquet"
    run_campaign(FakeBackend(), TINY, FAST, seed=1, count=3, out=out, repeat_every=0, reference_every=0)
    run_campaign(FakeBackend(), TINY, FAST, seed=1, count=6, out=out, repeat_every=0, reference_every=0)
    ds = load(out)
    run_ids = set(ds.table.column("run_id").to_pylist())
    assert len(run_ids) == 2 and set(ds.runs) == run_ids
    for run in ds.runs.values():
        assert set(run) == {"environment", "protocol", "cpus", "host", "started", "burn_in_s"}
        assert run["environment"] == ds.header["environment"] and run["protocol"] == FAST.to_dict()
        assert run["cpus"] == sorted(os.sched_getaffinity(0)) and run["host"]
    assert ds.header["backend_options"] == {}
    shard = tmp_path / "more.parquet"
    run_campaign(FakeBackend(), TINY, FAST, seed=1, count=9, out=shard, shard=Shard(3, 3), repeat_every=0,
                 reference_every=0)
    merged = tmp_path / "all.parquet"
    assert merge([out, shard], merged).runs == 3
    assert load(merged).runs == {**ds.runs, **load(shard).runs}


def test_second_writer_process_gets_a_clear_error(tmp_path: Path) -> None:
    out = tmp_path / "t.parquet"
    assert main(["measure", "--backend", "torch", "--count", "2", *TINY_ARGS, "--out", str(out)]) == 0
    cmd = [sys.executable, "-m", "latkit", "measure", "--backend", "torch", "--count", "4", *TINY_ARGS,
           "--out", str(out)]
    writer, existing = open_writer(out, load(out).header)  # this process is measuring into it
    assert existing is not None
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr == (f"latkit: error: {out} is being written by another latkit process; wait for it or use "
                           "another --out\n")
    assert _indices(out) == [0, 1]  # the first writer's rows are intact
    writer.close()
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    assert _indices(out) == [0, 1, 2, 3]
    validate(out)


def test_measure_cli_fault_flags_and_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["measure", "--backend", "torch", "--count", "1", "--max-failures", "-1"]) == 2
    assert "--max-failures" in capsys.readouterr().err
    out = tmp_path / "t.parquet"
    args = ["measure", "--backend", "torch", *TINY_ARGS, "--retry-errors", "--max-failures", "0", "--out", str(out)]
    assert main([*args, "--count", "1"]) == 0
    journal_path(out).write_text('{"row": {"kind": "sam')  # what a crash mid-write leaves
    assert main([*args, "--count", "2"]) == 0
    captured = capsys.readouterr()
    assert "measured 1 architectures" in captured.out
    assert captured.err.startswith("latkit: warning: cut off a partial last line (1)")
    assert _indices(out) == [0, 1]


class CountingBackend(FixedBackend):
    """Records every prepare: (the model is DARTS_V2, whether it was prepared beside another runner)."""

    def __init__(self, persistent: bool) -> None:
        super().__init__()
        self.persistent_runners, self.prepared = persistent, []

    def _prepare_impl(self, source: ModelSource, beside: Runner | None = None) -> _Runner:
        self.prepared.append((source.network.genotype == PUBLISHED["DARTS_V2"], beside is not None))
        return _Runner()


@pytest.mark.parametrize("persistent", [True, False])
def test_duet_reference_is_prepared_once_where_runners_persist(tmp_path: Path, persistent: bool) -> None:
    backend = CountingBackend(persistent)
    run_campaign(backend, TINY, FAST, seed=0, count=5, out=tmp_path / "r.parquet", reference_every=2, repeat_every=0)
    assert _indices(tmp_path / "r.parquet", "reference") == [-1, -1, -1]  # at the start, after sample 2 and 4
    models = 5 + 3  # samples and reference rows
    if persistent:  # the reference once, alone; every model beside it
        assert backend.prepared == [(True, False)] + [(g, True) for g, _ in backend.prepared[1:]]
        assert len(backend.prepared) == 1 + models
    else:  # the reference checked alone once, then each model alone and the reference beside it
        assert backend.prepared[0] == (True, False) and len(backend.prepared) == 1 + 2 * models
        assert all(p == (True, True) for p in backend.prepared[2::2])
        assert all(not beside for _, beside in backend.prepared[1::2])


def test_burn_in_times_the_reference_first_and_keeps_no_row(tmp_path: Path) -> None:
    out = tmp_path / "r.parquet"
    backend = CountingBackend(True)
    run_campaign(backend, TINY, FAST, seed=0, count=3, out=out, reference_every=2, repeat_every=0, burn_in_s=0.3)
    ds = load(out)
    assert _indices(out, "reference") == [-1, -1] and ds.table.num_rows == 5  # the rows a campaign without it has
    burnt = len(backend.prepared) - (1 + 5)  # beyond the reference alone and the five rows' models
    assert burnt >= 1 and all(g and beside for g, beside in backend.prepared[1:1 + burnt])  # DARTS_V2 beside it
    (run,) = ds.runs.values()
    assert run["burn_in_s"] == 0.3
    first = min(datetime.fromisoformat(t) for t in ds.table.column("timestamp").to_pylist())
    assert (first - datetime.fromisoformat(run["started"])).total_seconds() >= 0.3
    with pytest.raises(LatkitError, match="burn-in"):
        run_campaign(backend, TINY, FAST, seed=0, count=3, out=out, burn_in_s=-1.0)


class _FailsBesideBackend(CountingBackend):
    """DARTS_V2 runs alone (the check passes) but not when prepared beside the reference."""

    def _prepare_impl(self, source: ModelSource, beside: Runner | None = None) -> _Runner:
        if beside is not None and source.network.genotype == PUBLISHED["DARTS_V2"]:
            raise RuntimeError("no room for two")
        return super()._prepare_impl(source, beside)


def test_a_reference_that_fails_in_the_burn_in_stops_the_run_before_any_row(tmp_path: Path) -> None:
    out = tmp_path / "r.parquet"
    with pytest.raises(ReferenceFailure, match="burn-in: .*no room for two"):
        run_campaign(_FailsBesideBackend(True), TINY, FAST, seed=0, count=3, out=out, reference_every=0,
                     repeat_every=0, burn_in_s=5.0)
    assert not out.exists() and not journal_path(out).exists()


class Host:
    """The speed state of a fake host: every spin-waiting runner takes ``factor`` times its cost."""

    factor = 1.0


class _SpinRunner(Runner):
    device = "cpu"

    def __init__(self, cost_ms: float, host: Host) -> None:
        self.cost_ms, self.host = cost_ms, host

    def run(self) -> None:
        end = time.perf_counter() + self.cost_ms * self.host.factor / 1e3
        while time.perf_counter() < end:
            pass


class SpinBackend(FixedBackend):
    """Each architecture costs 0.4 ms plus 0.1 ms per separable convolution, times the host's speed factor."""

    def __init__(self, host: Host) -> None:
        super().__init__()
        self.host = host

    def _prepare_impl(self, source: ModelSource, beside: Runner | None = None) -> _SpinRunner:
        g = source.network.genotype
        seps = sum(op.startswith("sep_conv") for op, _ in g.normal + g.reduce)
        return _SpinRunner(0.4 + 0.1 * seps, self.host)


def test_a_slowdown_mid_campaign_moves_the_raw_latency_not_the_normalised(tmp_path: Path) -> None:
    protocol = MeasureProtocol(warmup_runs=2, warmup_ms=0, repeats=5)
    steady, slowed = tmp_path / "steady.parquet", tmp_path / "slowed.parquet"
    run_campaign(SpinBackend(Host()), TINY, protocol, seed=0, count=12, out=steady, repeat_every=0)
    host = Host()

    def slow_down(done: int, total: int, failures: int) -> None:
        host.factor = 1.5 if done >= 6 else 1.0  # a slow host state from the 7th architecture on

    run_campaign(SpinBackend(host), TINY, protocol, seed=0, count=12, out=slowed, repeat_every=0, progress=slow_down)
    a, b = load(steady), load(slowed)
    assert a.duet and b.duet and a.header["protocol"]["duet"]
    raw = b.samples().column("min_ms").to_numpy() / a.samples().column("min_ms").to_numpy()
    norm = b.latency_ms(b.samples()) / a.latency_ms(a.samples())
    assert all(r < 1.15 for r in raw[:6]) and all(r > 1.3 for r in raw[6:])  # the raw minimum moved...
    assert all(abs(n - 1) < 0.08 for n in norm), norm  # ...the normalised latency did not
    assert b.baseline_ms() == pytest.approx(a.baseline_ms(), rel=0.1)  # the baseline is the fast state's
    assert b.flagged(b.samples()).sum() >= 5 and a.flagged(a.samples()).sum() <= 1  # the slow windows are flagged


def test_duet_rows_round_trip_and_resume_refuses_the_other_protocol(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "d.parquet"
    run_campaign(SpinBackend(Host()), TINY, FAST, seed=0, count=3, out=out, repeat_every=2, reference_every=2)
    run_campaign(SpinBackend(Host()), TINY, FAST, seed=0, count=5, out=out, repeat_every=2, reference_every=2)
    ds = validate(out)
    t = ds.table.to_pydict()
    assert sorted(i for k, i in zip(t["kind"], t["index"]) if k == "sample") == list(range(5))
    for r in range(ds.table.num_rows):  # every row, of every kind, carries its window's reference and the ratio
        assert t["ref_min_ms"][r] > 0 and t["ratio"][r] == pytest.approx(t["min_ms"][r] / t["ref_min_ms"][r])
    refs = [t["ratio"][r] for r in range(len(t["kind"])) if t["kind"][r] == "reference"]
    assert len(refs) == 3 and all(0.8 < x < 1.25 for x in refs)  # DARTS_V2 beside itself: at each start, after 2
    with pytest.raises(LatkitError, match=r"holds rows measured with the duet protocol, this run measures with the "
                                          r"solo protocol"):
        run_campaign(SpinBackend(Host()), TINY, SOLO, seed=0, count=6, out=out)
    assert load(out).table.num_rows == ds.table.num_rows  # nothing lost, nothing added
    assert main(["dataset", "info", str(out), "--stat", "min_ms"]) == 0
    info = capsys.readouterr().out
    assert "protocol duet" in info and "raw noise floor" in info and "normalised noise floor" in info


def test_an_old_solo_file_loads_says_so_and_resumes_only_solo(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from latkit.datasets.store import META_KEY, OPTIONAL_COLUMNS

    new = tmp_path / "new.parquet"
    run_campaign(SpinBackend(Host()), TINY, SOLO, seed=0, count=2, out=new, repeat_every=0, reference_every=0)
    ds = load(new)
    header = dict(ds.header, version=1, protocol={k: v for k, v in ds.header["protocol"].items() if k != "duet"})
    old = tmp_path / "old.parquet"  # as a version-1 writer left it: no reference columns, no duet key
    table = ds.table.drop_columns(list(OPTIONAL_COLUMNS))
    pq.write_table(table.replace_schema_metadata({META_KEY: json.dumps(header).encode()}), old)
    loaded = validate(old)
    assert loaded.header["protocol"]["duet"] is False and not loaded.duet
    assert loaded.table.column("ratio").null_count == 2
    assert list(loaded.latency_ms(loaded.samples())) == loaded.samples().column("min_ms").to_pylist()  # raw
    with pytest.raises(LatkitError, match=r"holds rows measured with the solo protocol.*latkit measure --solo"):
        run_campaign(SpinBackend(Host()), TINY, FAST, seed=0, count=3, out=old)
    assert run_campaign(SpinBackend(Host()), TINY, SOLO, seed=0, count=3, out=old, repeat_every=0,
                        reference_every=0).measured == 1
    assert load(old).header["version"] == 2 and _indices(old) == [0, 1, 2]
    assert main(["dataset", "info", str(old)]) == 0
    assert "protocol solo" in capsys.readouterr().out


class ScriptedExecutor:
    """The engine's executor for tests: jobs run on a fake backend in this process, except that the workers die
    under the jobs ``deaths`` names, as often as it says (a segfault, out of memory), and are replaced by a worker
    of a new id; with ``its_own`` False another worker (a builder) dies under the job instead."""

    lookahead = replaced = 0

    def __init__(self, deaths: dict[tuple[str, int], int], its_own: bool = True):
        from latkit.campaign import Worker

        self.worker, self.deaths, self.its_own = Worker(FakeBackend(), TINY, SOLO, 0), dict(deaths), its_own
        self.workers, self.refused, self.job, self.ran, self.wid = 1, [], None, [], "w0"

    def header(self):
        return self.worker.header()

    def start(self, writer, jobs):
        writer.add_run(self.worker.run_id, self.worker.run)

    def idle(self):
        return [] if self.job else [self.wid]

    def submit(self, worker, job):
        self.job = job

    def busy(self):
        return self.job is not None

    def wait(self):
        from latkit.campaign import Died

        job, self.job = self.job, None
        self.ran.append((job.kind, job.index))
        worker = self.wid
        if self.deaths.get((job.kind, job.index), 0) > 0:
            self.deaths[(job.kind, job.index)] -= 1
            self.replaced += 1
            if self.its_own:
                self.wid = f"w{self.replaced}"  # the replacement
            return worker, job, Died("RayActorError: the actor died unexpectedly", its_own=self.its_own)
        return worker, job, self.worker.measure(job)

    def prefetch(self, indices):
        pass

    def stop(self):
        pass


def test_an_architecture_that_kills_its_workers_becomes_an_error_row(tmp_path: Path) -> None:
    from latkit.campaign import run

    out = tmp_path / "k.parquet"
    executor = ScriptedExecutor({("sample", 2): 5, ("sample", 4): 1})
    result = run(executor, seed=0, count=6, out=out, repeat_every=0, reference_every=0)
    assert executor.ran.count(("sample", 2)) == 2 and executor.ran.count(("sample", 4)) == 2
    assert (result.requeued, result.killers, result.replaced) == (2, 1, 3)  # 2 and 4 queued again once each
    rows = {i: (s, e) for (i, s), e in zip(_statuses(out), [r["error"] for r in load(out).table.to_pylist()
                                                             if r["kind"] == "sample"])}
    assert rows[2][0] == "error" and rows[2][1].startswith("WorkerDied: architecture 2 killed its worker 2 times "
                                                           "(last as a sample: RayActorError")
    fails = sample(0, 4).normal[0][0] == "max_pool_3x3"  # what the fake backend does with it
    assert rows[4] == (("error", "RuntimeError: unsupported by the fake runtime") if fails else ("ok", ""))
    again = run(ScriptedExecutor({("sample", 2): 5}), seed=0, count=8, out=out, repeat_every=0, reference_every=0)
    assert again.measured == 2  # the resume passes the killer


def test_a_lost_repeat_is_queued_again_and_repeats_only_successful_samples(tmp_path: Path) -> None:
    from latkit.campaign import run

    out = tmp_path / "r.parquet"
    executor = ScriptedExecutor({})
    run(executor, seed=0, count=20, out=out, repeat_every=2, reference_every=0)
    first_repeat = next(j for j in executor.ran if j[0] == "repeat")
    executor2 = ScriptedExecutor({first_repeat: 1})
    run(executor2, seed=0, count=20, out=tmp_path / "r2.parquet", repeat_every=2, reference_every=0)
    assert executor2.ran.count(first_repeat) == executor.ran.count(first_repeat) + 1  # lost once, timed again
    ds = load(tmp_path / "r2.parquet")
    ok = {i for i, s in _statuses(tmp_path / "r2.parquet") if s == "ok"}
    failed = {i for i, s in _statuses(tmp_path / "r2.parquet") if s == "error"}
    repeats = [i for k, i in zip(ds.table.column("kind").to_pylist(), ds.table.column("index").to_pylist())
               if k == "repeat"]
    assert failed and len(repeats) == 10 and set(repeats) <= ok  # a failed architecture is never re-timed


def test_validate_refuses_a_duet_row_whose_ratio_or_reference_is_wrong(tmp_path: Path) -> None:
    import json

    from latkit.datasets.store import DatasetError

    out = tmp_path / "d.parquet"
    run_campaign(SpinBackend(Host()), TINY, FAST, seed=0, count=2, out=out, repeat_every=0, reference_every=0)
    header = load(out).header
    rows = load(out).table.to_pylist()
    for change, message in (({"ratio": 9.0}, "is not min_ms / ref_min_ms"),
                            ({"ref_min_ms": None}, "reference's statistics are missing")):
        bad = tmp_path / f"bad{len(message)}.parquet"
        writer, _ = open_writer(bad, header)
        for i, row in enumerate(rows):
            writer.append(dict(row, **change) if i == 1 else row)
        writer.close()
        with pytest.raises(DatasetError, match=message):
            validate(bad)
    solo = dict(header, protocol=dict(header["protocol"], duet=False))
    bad = tmp_path / "solo.parquet"
    writer, _ = open_writer(bad, solo)
    writer.append(rows[0])
    writer.close()
    with pytest.raises(DatasetError, match="reference statistics in a solo-protocol file"):
        validate(bad)
    assert json.loads(json.dumps(header))["protocol"]["duet"] is True


def test_a_job_lost_with_a_builder_is_not_held_against_the_architecture(tmp_path: Path) -> None:
    from latkit.campaign import run

    executor = ScriptedExecutor({("sample", 1): 3}, its_own=False)
    result = run(executor, seed=0, count=3, out=tmp_path / "b.parquet", repeat_every=0, reference_every=0)
    assert executor.ran.count(("sample", 1)) == 4 and (result.killers, result.requeued) == (0, 3)
    assert sorted(i for i, _ in _statuses(tmp_path / "b.parquet")) == [0, 1, 2]
    assert not any(r["error"].startswith("WorkerDied") for r in load(tmp_path / "b.parquet").table.to_pylist())


def test_the_replacement_of_a_dead_worker_times_the_reference_first(tmp_path: Path) -> None:
    from latkit.campaign import run

    executor = ScriptedExecutor({("sample", 1): 1})
    run(executor, seed=0, count=4, out=tmp_path / "r.parquet", repeat_every=0, reference_every=10)
    assert executor.ran == [("reference", -1), ("sample", 0), ("sample", 1),  # the worker dies under sample 1...
                            ("reference", -1), ("sample", 1), ("sample", 2), ("sample", 3)]  # ...its replacement
    rows = load(tmp_path / "r.parquet").table.to_pylist()
    assert [r["run_id"] for r in rows if r["kind"] == "reference"] == ["w0", "w1"]


class PairOomBackend(FixedBackend):
    """Like torch.compile, the reference is prepared beside each model; beside sample 2's model it does not fit."""

    persistent_runners = False

    def _prepare_impl(self, source: ModelSource, beside: Runner | None = None) -> _Runner:
        if beside is not None and getattr(beside, "genotype", None) == sample(0, 2):
            raise RuntimeError("out of memory")
        runner = _Runner()
        runner.genotype = source.network.genotype
        return runner


def test_a_reference_that_fails_beside_one_model_is_that_models_error_row(tmp_path: Path) -> None:
    out = tmp_path / "pair.parquet"
    result = run_campaign(PairOomBackend(), TINY, FAST, seed=0, count=4, out=out, repeat_every=0, reference_every=0)
    assert result.measured == 4 and result.failures == 1
    rows = [r for r in load(out).table.to_pylist() if r["kind"] == "sample"]
    assert [(r["index"], r["status"]) for r in rows] == [(0, "ok"), (1, "ok"), (2, "error"), (3, "ok")]
    assert rows[2]["error"] == "RuntimeError: out of memory"


def test_a_reference_timed_at_zero_is_an_error_row_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    import latkit.measure as measure_module
    from latkit.backends.timing import LatencyStats, Timing
    from latkit.measure import Reference, reference_source, time_genotype

    zero = LatencyStats.from_samples([0.0, 0.0])
    monkeypatch.setattr(measure_module, "measure", lambda runner, protocol, ref=None: Timing(
        LatencyStats.from_samples([1.0, 1.2]), 0, 0.0, 1.0, 1.0, 1, zero))
    backend = FixedBackend()
    row = time_genotype(backend, sample(0, 0), TINY, FAST, reference=Reference(backend, reference_source(TINY)))
    assert row["status"] == "error" and "the reference timed 0 ms" in row["error"] and row["ratio"] is None


def test_the_unit_is_frozen_when_the_first_run_ends_and_appending_never_moves_it(tmp_path: Path) -> None:
    import numpy as np

    out = tmp_path / "duet.parquet"
    run_campaign(FakeBackend(), TINY, FAST, seed=0, count=6, out=out, repeat_every=0, reference_every=0)
    first = load(out)
    ok = first.table.column("status").to_pylist().count("ok")
    assert first.frozen and first.header["baseline"]["windows"] == ok
    frozen = first.baseline_ms()
    assert frozen == first.live_baseline_ms()  # frozen from the rows of the run that first wrote the file
    class Slower(_Runner):  # a host state that slows the reference too: the live baseline moves up
        def run(self) -> None:
            time.sleep(0.0005)

    class SlowerBackend(FakeBackend):
        def _prepare_impl(self, source: ModelSource, beside: Runner | None = None) -> _Runner:
            super()._prepare_impl(source, beside)
            return Slower()

    run_campaign(SlowerBackend(), TINY, FAST, seed=0, count=40, out=out, repeat_every=0, reference_every=0)
    later = load(out)
    assert later.baseline_ms() == frozen != later.live_baseline_ms()  # 40 windows now: the live one moved
    t = later.samples()
    ratio = np.asarray(t.column("ratio").to_pylist())
    np.testing.assert_allclose(later.latency_ms(t), ratio * frozen, rtol=1e-12)
    assert main(["dataset", "rebase", str(out)]) == 0  # explicitly: the unit of all 40 rows
    assert load(out).baseline_ms() == later.live_baseline_ms()
    assert load(out).table.num_rows == later.table.num_rows


def test_merging_files_in_different_units_is_refused_in_one_line_unless_rebased(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from latkit.datasets.store import rebase

    a, b, both = tmp_path / "a.parquet", tmp_path / "b.parquet", tmp_path / "both.parquet"
    run_campaign(FakeBackend(), TINY, FAST, seed=0, count=12, out=a, shard=Shard(1, 2), repeat_every=0,
                 reference_every=0)
    run_campaign(FakeBackend(), TINY, FAST, seed=0, count=12, out=b, shard=Shard(2, 2), repeat_every=0,
                 reference_every=0)
    assert not load(a).frozen and not load(b).frozen  # a shard's unit is set where it is merged
    assert merge([a, b], both).rebased and load(both).baseline_ms() == load(both).live_baseline_ms()
    rebase(a)
    rebase(b)
    assert load(a).baseline_ms() != load(b).baseline_ms()
    capsys.readouterr()
    assert main(["dataset", "merge", str(a), str(b), "--out", str(tmp_path / "c.parquet")]) == 2
    err = capsys.readouterr().err
    assert "different units" in err and "--rebase" in err and err.count("\n") == 1
    assert not (tmp_path / "c.parquet").exists()
    assert main(["dataset", "merge", str(a), str(b), "--out", str(tmp_path / "c.parquet"), "--rebase"]) == 0
    merged = load(tmp_path / "c.parquet")
    assert merged.baseline_ms() == merged.live_baseline_ms()
    rebase(b)  # the same rows give the same baseline: a's and a copy of a merge with a's unit kept
    assert merge([a], tmp_path / "d.parquet").baseline_ms == load(a).baseline_ms()
