"""Measurement campaigns on Ray (latkit measure --ray), on a local Ray instance the tests start and stop."""
from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from latkit.backends.timing import MeasureProtocol
from latkit.cli import main
from latkit.datasets.store import FORMAT, FORMAT_VERSION, journal_path, load, open_writer
from latkit.errors import LatkitError
from latkit.network import NetConfig

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'latkit[ray]')")

from latkit.cluster import Spec, run_campaign_ray  # noqa: E402

TINY = NetConfig(layers=5, channels=8, resolution=16)
FAST = MeasureProtocol(warmup_runs=2, warmup_ms=0.0, repeats=3)
SPEC = Spec("onnxruntime", "cpu", {}, TINY, FAST, 0)
TINY_ARGS = ["--layers", "5", "--channels", "8", "--resolution", "16", "--repeats", "3", "--warmup-runs", "2",
             "--warmup-ms", "0"]


@pytest.fixture(scope="module")
def cluster() -> Any:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def sample_indices(path: Path) -> list[int]:
    t = load(path).table.to_pydict()
    return sorted(i for k, i in zip(t["kind"], t["index"]) if k == "sample")


def test_two_workers_measure_exactly_the_requested_samples(cluster: Any, tmp_path: Path) -> None:
    out = tmp_path / "ds.parquet"
    result = run_campaign_ray(SPEC, count=10, out=str(out), workers=2, reference_every=4, repeat_every=3)
    assert result.measured == 10 and result.workers == 2 and result.failures == 0
    assert sample_indices(out) == list(range(10))
    ds = load(out)
    t = ds.table.to_pydict()
    assert set(t["run_id"]) <= set(ds.runs) and len(ds.runs) == 2  # each worker a run of its own...
    assert all(run["host"] and len(run["cpus"]) == 1 for run in ds.runs.values())  # ...naming its host and core
    assert {run["cpus"][0] for run in ds.runs.values()} == {0, 1}  # never two slots on one core
    kinds = collections.Counter(t["kind"])
    assert kinds["repeat"] == 3 and kinds["reference"] >= 2
    # resume: only the new indices are measured
    again = run_campaign_ray(SPEC, count=13, out=str(out), workers=2, reference_every=0, repeat_every=0)
    assert again.measured == 3 and again.skipped == 10 and sample_indices(out) == list(range(13))


def test_builders_prepare_ahead_and_the_rows_are_the_same(cluster: Any, tmp_path: Path) -> None:
    out = tmp_path / "built.parquet"
    result = run_campaign_ray(SPEC, count=6, out=str(out), workers=1, builders=1, reference_every=0, repeat_every=0)
    assert result.measured == 6 and sample_indices(out) == list(range(6))
    t = load(out).table.to_pydict()
    assert set(t["status"]) == {"ok"} and all(g for g in t["genotype"])


def kill_actor_at(prefix: str, at: int, killed: list[str]) -> Any:
    """A progress callback that kills the first actor named ``prefix...`` once ``at`` samples are done."""

    def progress(done: int, total: int, failures: int) -> None:
        if done == at and not killed:
            name = next(n for n in ray.util.list_named_actors() if n.startswith(prefix))
            ray.kill(ray.get_actor(name))
            killed.append(name)

    return progress


def test_a_killed_worker_loses_and_duplicates_nothing(cluster: Any, tmp_path: Path) -> None:
    out = tmp_path / "killed.parquet"
    killed: list[str] = []
    result = run_campaign_ray(SPEC, count=12, out=str(out), workers=2, reference_every=0, repeat_every=0,
                              progress=kill_actor_at("latkit-slot-", 3, killed))
    assert killed and result.replaced >= 1 and result.requeued >= 1
    assert sample_indices(out) == list(range(12))  # none lost, none twice
    assert len(load(out).runs) == 3  # the replacement is a run of its own


def test_a_worker_with_another_environment_is_refused(cluster: Any, tmp_path: Path) -> None:
    out = tmp_path / "foreign.parquet"
    # a dataset begun on another machine: same campaign, another CPU
    first = run_campaign_ray(SPEC, count=1, out=str(out), workers=1, reference_every=0, repeat_every=0)
    assert first.measured == 1
    ds = load(out)
    header = dict(ds.header, environment=dict(ds.header["environment"], cpu="Some Other CPU"))
    other = tmp_path / "other.parquet"
    writer, _ = open_writer(other, header)
    writer.append(ds.table.to_pylist()[0])
    writer.close()
    with pytest.raises(LatkitError, match=r"measured with a different environment\.cpu"):
        run_campaign_ray(SPEC, count=3, out=str(other), workers=1, reference_every=0, repeat_every=0)
    assert sample_indices(other) == [0]  # nothing mixed in


def test_a_later_worker_on_another_machine_is_refused_and_stopped(cluster: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from latkit.cluster import RayExecutor

    killed: list[str] = []
    monkeypatch.setattr(ray, "kill", killed.append)
    executor = RayExecutor(SPEC, workers=1)
    executor.writer = type("W", (), {"header": {"backend": "onnxruntime", "environment": {"cpu": "A"}}, "runs": {},
                                      "path": "ds.parquet",
                                      "add_run": lambda self, rid, run: self.runs.update({rid: run})})()
    actor = type("Actor", (), {"check": type("Call", (), {"remote": staticmethod(lambda: ray.put(None))})()})
    same = {"header": {"backend": "onnxruntime", "environment": {"cpu": "A"}}, "run": {"host": "a"}, "run_id": "ra"}
    other = {"header": {"backend": "onnxruntime", "environment": {"cpu": "B"}}, "run": {"host": "b"}, "run_id": "rb"}
    assert executor.admit(actor(), same)
    refused = actor()
    assert not executor.admit(refused, other)
    assert killed == [refused] and list(executor.writer.runs) == ["ra"] and list(executor.slots) == ["ra"]
    assert executor.refused == ["worker on b refused: its environment.cpu differ from ds.parquet's (measure there "
                                "into another --out, or --force where only the environment differs)"]


def test_ray_flags_need_ray_and_a_cluster_that_answers(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "x.parquet"
    argv = ["measure", "--backend", "onnxruntime", "--count", "2", "--out", str(out), *TINY_ARGS]
    assert main([*argv, "--ray", "127.0.0.1:9"]) == 2
    assert "no Ray cluster answers at 127.0.0.1:9" in capsys.readouterr().err
    assert main([*argv, "--workers", "2"]) == 2
    assert "need --ray" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert main([*argv, "--ray", "local"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'latkit[ray]'" in err
    assert not out.exists() and not journal_path(out).exists()


def test_a_driver_killed_with_sigkill_resumes_with_nothing_lost_or_twice(tmp_path: Path) -> None:
    out = tmp_path / "driver.parquet"
    cmd = [sys.executable, "-m", "latkit", "measure", "--backend", "onnxruntime", "--count", "30", "--out", str(out),
           "--ray", "local", "--workers", "2", "--repeat-every", "0", "--reference-every", "0", *TINY_ARGS]
    env = dict(os.environ, RAY_ADDRESS="")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            jp = journal_path(out)
            if jp.exists() and jp.read_bytes().count(b'"row"') >= 5:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the campaign ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    partial = sample_indices(out)
    assert 5 <= len(partial) < 30
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert sample_indices(out) == list(range(30))  # every index once: nothing lost, nothing twice


def test_sweep_on_ray_runs_each_lambda_as_a_task(cluster: Any, dataset: Path, tmp_path: Path) -> None:
    import json

    from latkit.predictors import fit_dataset

    predictor, _ = fit_dataset(dataset, "additive")
    pred_dir = predictor.save(tmp_path / "additive")
    out = tmp_path / "sweep"
    tiny = ["--epochs", "1", "--layers", "3", "--channels", "4", "--limit", "64", "--resolution", "8", "--threads", "1"]
    assert main(["sweep", "--ray", "local", "--target", "onnxruntime", "--predictor", str(pred_dir), "--lambdas",
                 "0,1", "--backends", "torch", *tiny, "--train-epochs", "1", "--train-layers", "3",
                 "--train-channels", "4", "--out", str(out)]) == 0
    doc = json.loads((out / "sweep.json").read_text())
    assert [r["name"] for r in doc["rows"]] == ["DARTS_V2", "lambda=0", "lambda=1"]
    assert all(r["latency_ms"]["torch/cpu"] > 0 and r["latency_ms"]["onnxruntime/cpu"] > 0 for r in doc["rows"])
    for lam in ("0", "1"):  # each search's result written by the driver, whichever machine searched
        assert json.loads((out / f"lambda_{lam}" / "result.json").read_text())["lam"] == float(lam)


def test_ray_and_local_campaigns_give_the_same_rows(cluster: Any, tmp_path: Path) -> None:
    from latkit.backends.registry import get_backend
    from latkit.campaign import run_campaign

    policy = dict(count=6, repeat_every=3, reference_every=4)
    local, remote = tmp_path / "local.parquet", tmp_path / "ray.parquet"
    run_campaign(get_backend("onnxruntime"), TINY, FAST, seed=0, out=local, **policy)
    run_campaign_ray(SPEC, out=str(remote), workers=1, **policy)

    def rows(path: Path) -> list[tuple]:
        ds = load(path)
        assert ds.duet and ds.header["protocol"] == FAST.to_dict()
        t = ds.table.to_pylist()
        assert all(r["ref_min_ms"] > 0 and r["ratio"] > 0 for r in t)  # each row timed beside the reference
        return [(r["kind"], r["index"], r["genotype"], r["status"]) for r in t]

    assert rows(local) == rows(remote)
    assert load(local).header["config"] == load(remote).header["config"]


def test_a_slot_claims_one_core_per_thread() -> None:
    from latkit.cluster import claim_cores

    cpus = os.sched_getaffinity(0)
    if len(cpus) < 2:
        pytest.skip("needs 2 cores")
    try:
        cores, claims = claim_cores(2)
        assert len(set(cores)) == 2 and os.sched_getaffinity(0) == set(cores)
        with pytest.raises(LatkitError, match="held by other latkit workers"):
            claim_cores(1, wait_s=0)  # every core is held: a third thread would share one unnoticed
        with pytest.raises(LatkitError, match=f"needs {len(cpus) + 1} cores"):
            claim_cores(len(cpus) + 1)
    finally:
        for claim in claims:
            claim.close()
        os.sched_setaffinity(0, cpus)


def test_a_slot_that_cannot_start_is_one_line_in_bounded_time(cluster: Any, tmp_path: Path) -> None:
    out = tmp_path / "never.parquet"
    # the constructor fails: an option the CPU provider does not take
    bad_option = Spec("onnxruntime", "cpu", {"cuda_graph": "true"}, TINY, FAST, 0)
    with pytest.raises(LatkitError, match=r"a measuring slot could not start: .*apply to --device cuda") as info:
        run_campaign_ray(bad_option, count=2, out=str(out), workers=1)
    assert "\n" not in str(info.value)
    # nothing can schedule it: a GPU slot on a cluster without GPUs
    started = time.monotonic()
    with pytest.raises(LatkitError, match=r"did not start within 3 s: the Ray cluster has .* free") as info:
        run_campaign_ray(Spec("torch", "cuda", {}, TINY, FAST, 0), count=2, out=str(out), workers=1,
                         start_timeout_s=3)
    assert time.monotonic() - started < 60 and "\n" not in str(info.value)
    assert not out.exists() and not journal_path(out).exists()


def test_a_slot_of_two_threads_holds_two_cores(cluster: Any, tmp_path: Path) -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 cores")
    out = tmp_path / "threads.parquet"
    two = Spec("onnxruntime", "cpu", {}, TINY, MeasureProtocol(warmup_runs=1, warmup_ms=0.0, repeats=2, threads=2), 0)
    result = run_campaign_ray(two, count=2, out=str(out), workers=1, reference_every=0, repeat_every=0)
    assert result.measured == 2
    (run,) = load(out).runs.values()
    assert len(run["cpus"]) == 2 and run["protocol"]["threads"] == 2  # one core per thread, none shared unnoticed


def test_a_killed_builder_is_replaced_and_its_job_built_on_the_slot(cluster: Any, tmp_path: Path) -> None:
    out = tmp_path / "builder.parquet"
    killed: list[str] = []
    result = run_campaign_ray(SPEC, count=8, out=str(out), workers=1, builders=1, reference_every=0,
                              repeat_every=0, progress=kill_actor_at("latkit-builder-", 2, killed))
    assert killed and result.replaced >= 1 and result.killers == 0
    assert sample_indices(out) == list(range(8))
    assert not any(e.startswith("WorkerDied") for e in load(out).table.column("error").to_pylist() if e)


def test_a_slot_burns_in_as_its_spec_says_and_records_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import latkit.cluster as cluster

    monkeypatch.setattr(cluster, "claim_cores", lambda *a, **k: ([], []))  # no pinning of the test process
    slot = cluster.Slot(Spec("torch", "cpu", {}, TINY, FAST, 0, burn_in_s=0.2))
    assert slot.describe()["run"]["burn_in_s"] == 0.2 and slot.worker.burn_in_s == 0.2
    assert cluster.Slot(SPEC).describe()["run"]["burn_in_s"] == 0.0


class _Ref:
    def __init__(self, value: Any) -> None:
        self.value = value


class _FakeActor:
    """An actor whose calls answer at once: ``measure`` as ``FakeRay.deaths`` scripts it."""

    def __init__(self, fake: "_FakeRay", name: str) -> None:
        self._actor_id = type("ActorID", (), {"hex": lambda _: name})()
        call = lambda f: type("Call", (), {"remote": staticmethod(f)})()  # noqa: E731
        info = {"header": {"backend": "onnxruntime", "environment": {}}, "run_id": f"run-{name}",
                "run": {"host": "h", "cpus": [0]}}
        self.describe, self.check = call(lambda: _Ref(info)), call(lambda: _Ref(None))
        self.build = call(lambda index: _Ref(f"{name} built {index}"))
        self.measure = call(lambda job, source=None: _Ref(fake.outcome(name, job, source)))


class _FakeRay:
    """What RayExecutor asks of Ray. ``deaths`` maps a sample index to the actor that dies under it ('slot', or
    'builder': the one that prebuilt it); the registry lists every actor ever started, as Ray's still may a
    while after one died."""

    exceptions = ray.exceptions

    def __init__(self, deaths: dict[int, str]) -> None:
        self.deaths, self.registry = dict(deaths), {}

    def remote(self, **kwargs: Any) -> Any:
        def options(**kw: Any) -> Any:
            def start(spec: Any) -> _FakeActor:
                self.registry[kw["name"]] = actor = _FakeActor(self, kw["name"])
                return actor
            return type("Start", (), {"remote": staticmethod(start)})()
        return lambda cls: type("Class", (), {"options": staticmethod(options)})()

    def outcome(self, slot: str, job: Any, source: Any) -> Any:
        dead = self.deaths.pop(job.index, None)
        if dead is None:
            return {"status": "ok"}
        name = slot if dead == "slot" else source.value.split()[0]
        return ray.exceptions.RayActorError(name, "The actor died unexpectedly before finishing this task.")

    def wait(self, refs: list, num_returns: int = 1) -> tuple[list, list]:
        return refs[:1], refs[1:]

    def get(self, ref: _Ref, timeout: float | None = None) -> Any:
        if isinstance(ref.value, BaseException):
            raise ref.value
        return ref.value

    def get_actor(self, name: str) -> Any:
        return self.registry[name]  # never "gone": the lag

    def kill(self, actor: Any) -> None:
        pass


@pytest.mark.parametrize("builders, dies", [(0, "slot"), (1, "slot"), (1, "builder")])
def test_a_death_is_told_by_the_error_not_by_a_lagging_registry(monkeypatch: pytest.MonkeyPatch, builders: int,
                                                                 dies: str) -> None:
    import latkit.cluster as cluster
    from latkit.campaign import Died, Job

    fake = _FakeRay({0: dies})
    monkeypatch.setattr(cluster, "connect", lambda *a, **k: fake)
    executor = cluster.RayExecutor(SPEC, workers=1, builders=builders)
    writer = type("W", (), {"header": {"backend": "onnxruntime", "environment": {}}, "path": "ds.parquet",
                            "add_run": lambda self, rid, run: None})()
    executor.header()
    executor.start(writer, 5)
    (first,), builder = list(executor.slots), executor.builders[:1]
    if builders:
        executor.prefetch([0])
    executor.submit(first, Job("sample", 0))
    worker, job, outcome = executor.wait()
    assert (worker, job) == (first, Job("sample", 0)) and isinstance(outcome, Died)
    assert outcome.its_own == (dies == "slot")  # a slot's death counts toward the architecture's death limit
    assert (first in executor.slots) == (dies == "builder")  # a dead slot leaves the pool, replaced
    assert len(executor.slots) == 1 and executor.replaced == 1
    assert (executor.builders[:1] == builder) == (dies == "slot")  # the named builder replaced, a live one kept
