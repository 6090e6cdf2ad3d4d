"""Measurement campaigns: resume, shards, recorded failures, and a real kill -9 in the middle of a run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from latkit.backends.base import Backend, MeasureProtocol, ModelSource, Runner
from latkit.cli import main
from latkit.datasets.quality import summary, validate
from latkit.datasets.store import journal_path, load, merge, open_writer
from latkit.errors import LatkitError
from latkit.measure import MeasurementBug, Shard, TooManyFailures, run_campaign
from latkit.network import NetConfig
from latkit.space import PUBLISHED, sample

TINY_ARGS = ["--layers", "3", "--channels", "4", "--resolution", "8", "--repeats", "3", "--warmup-runs", "1",
             "--warmup-ms", "0"]
TINY = NetConfig(layers=3, channels=4, resolution=8)
FAST = MeasureProtocol(warmup_runs=0, warmup_ms=0, repeats=2)


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

    def _prepare_impl(self, source: ModelSource) -> _Runner:
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

    def _prepare_impl(self, source: ModelSource) -> _Runner:
        return _Runner()


class BrokenBackend(FakeBackend):
    """Every architecture fails, as on a backend whose device was lost."""

    def _prepare_impl(self, source: ModelSource) -> _Runner:
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

    def _prepare_impl(self, source: ModelSource) -> _Runner:
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
        run_campaign(BrokenBackend(), TINY, FAST, seed=0, count=10, out=out, repeat_every=0, reference_every=0,
                     max_consecutive_failures=3)
    assert _statuses(out) == [(0, "error"), (1, "error"), (2, "error")]  # kept, and compacted
    assert not journal_path(out).exists()
    never = run_campaign(BrokenBackend(), TINY, FAST, seed=0, count=10, out=out, repeat_every=0, reference_every=0,
                         max_consecutive_failures=0)
    assert (never.measured, never.failures) == (7, 7)
    assert len(_statuses(out)) == 10


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
        run_campaign(BuggyBackend(exc, 3, stage), TINY, FAST, seed=0, count=10, out=out, repeat_every=0,
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
        assert set(run) == {"environment", "protocol", "cpus", "host", "started"}
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
    """Counts how often the reference architecture is prepared."""

    def __init__(self, persistent: bool) -> None:
        super().__init__()
        self.persistent_runners, self.references = persistent, 0

    def _prepare_impl(self, source: ModelSource) -> _Runner:
        self.references += source.network.genotype == PUBLISHED["DARTS_V2"]
        return _Runner()


@pytest.mark.parametrize("persistent, prepared", [(True, 1), (False, 3)])
def test_reference_is_prepared_afresh_where_runners_do_not_persist(tmp_path: Path, persistent: bool,
                                                                   prepared: int) -> None:
    backend = CountingBackend(persistent)
    run_campaign(backend, TINY, FAST, seed=0, count=5, out=tmp_path / "r.parquet", reference_every=2, repeat_every=0)
    assert backend.references == prepared  # at the start, after sample 2 and after sample 4
    assert _indices(tmp_path / "r.parquet", "reference") == [-1, -1, -1]
