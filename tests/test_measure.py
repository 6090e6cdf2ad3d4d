"""Measurement campaigns: resume, shards, recorded failures, and a real kill -9 in the middle of a run."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from latkit.backends.base import Backend, MeasureProtocol
from latkit.cli import main
from latkit.datasets.quality import validate
from latkit.datasets.store import journal_path, load
from latkit.errors import LatkitError
from latkit.measure import Shard, run_campaign
from latkit.network import NetConfig, Network
from latkit.space import sample

TINY_ARGS = ["--layers", "3", "--channels", "4", "--resolution", "8", "--repeats", "3", "--warmup-runs", "1",
             "--warmup-ms", "0"]
TINY = NetConfig(layers=3, channels=4, resolution=8)
FAST = MeasureProtocol(warmup_runs=0, warmup_ms=0, repeats=2)


class _Runner:
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

    def _prepare_impl(self, model: Network, config: NetConfig) -> _Runner:
        if model.genotype.normal[0][0] == "max_pool_3x3":
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
