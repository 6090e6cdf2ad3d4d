"""Measurement campaigns on a Ray cluster (``latkit measure --ray``).

The driver keeps the one crash-safe store (the single writer) and hands sample indices to measuring slots, Ray
actors that each own one device: a whole GPU (``num_gpus=1``) or, for CPU backends, one core it claims on its node
and pins itself to. Never two timings on one device at once: a slot runs one job at a time, and a core is claimed
through a lock file that only one process on the node can hold. Optional builder actors, on cores the slots do not
use, prepare architectures a few ahead (network build and ONNX export; a torch.compile compilation fills the node's
Inductor cache), so a slot mostly warms up and times.

Faults: a slot or builder that dies (killed, out of memory, node lost) has its in-flight job queued again and is
replaced; the driver killed with -9 resumes from the store with ``--ray`` again (only finished rows are written, so
none is lost or duplicated). A worker whose environment fingerprint differs from the dataset's is refused with the
keys that differ. Each worker is a run of its own in the dataset's provenance (host, CPUs, environment), so every row
names its host through ``run_id``.
"""
from __future__ import annotations

import collections
import os
import socket
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from latkit.backends.base import MeasureProtocol, ModelSource
from latkit.errors import LatkitError
from latkit.datasets.store import header_diff
from latkit.measure import (REFERENCE, CampaignResult, Progress, Shard, TooManyFailures, _now, _prepare_reference,
                            campaign_header, environment, error_columns, plan, reference_columns, repeat_of, row_base,
                            run_provenance, time_genotype, time_model)
from latkit.network import NetConfig, build
from latkit.space import PUBLISHED, sample

RAY_EXTRA = "pip install 'latkit[ray]'"
Log = Callable[[str], None]


def import_ray() -> Any:
    """Ray, or one line naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise LatkitError(f"--ray needs Ray, which is not installed ({RAY_EXTRA})") from None
    return ray


def connect(address: str, num_cpus: int | None = None, log_to_driver: bool = False) -> Any:
    """Connect to Ray: ``local`` starts a private instance here (``num_cpus`` of this machine), ``auto`` joins the
    cluster ``ray start`` runs on this machine, ``HOST:PORT`` (or ``ray://HOST:PORT``) joins that one. A Ray already
    initialised in this process (a test's ``ray.init``) is used as it is."""
    ray = import_ray()
    if address not in ("local", "auto"):
        host, _, port = address.removeprefix("ray://").rpartition(":")
        try:
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
        except (OSError, ValueError) as exc:
            raise LatkitError(f"no Ray cluster answers at {address} ({exc}); start one there with `ray start --head`") \
                from None
    if ray.is_initialized():
        return ray
    try:
        ray.init(address=None if address == "local" else address, num_cpus=num_cpus if address == "local" else None,
                 include_dashboard=False, log_to_driver=log_to_driver, logging_level="ERROR")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise LatkitError(f"cannot connect to Ray at {address!r}: {' '.join(str(exc).split())[:200]} (start a "
                          "cluster with `ray start --head`, or use --ray local)") from None
    return ray


def _get(ray: Any, refs: Any) -> Any:
    """Remote results; the exception a job raised, latkit's own passed through as it is."""
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        raise cause if isinstance(cause, LatkitError) else LatkitError(" ".join(str(exc).split())[:400]) from None


def claim_core(highest_first: bool = False, wait_s: float = 30.0) -> tuple[int, Any]:
    """Claim a core of this machine no other latkit worker holds (an exclusive lock on a per-core file), pin this
    process to it, and return it with the open lock file (the claim lasts while the file stays open)."""
    import fcntl

    cores = sorted(os.sched_getaffinity(0), reverse=highest_first)
    deadline = time.monotonic() + wait_s  # a worker of a campaign that just ended may still be exiting
    while True:
        for core in cores:
            handle = open(os.path.join(tempfile.gettempdir(), f"latkit-core-{core}.lock"), "w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            os.sched_setaffinity(0, {core})
            return core, handle
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    raise LatkitError(f"every core of {socket.gethostname()} ({len(cores)}) is held by another latkit worker")


@dataclass(frozen=True)
class Spec:
    """What every worker of a campaign measures with (sent to the actors)."""

    backend: str
    device: str
    options: dict[str, str]
    config: NetConfig
    protocol: MeasureProtocol
    seed: int

    def backend_instance(self) -> Any:
        from latkit.backends.registry import get_backend

        backend = get_backend(self.backend, self.device, self.protocol.threads, self.options)
        backend.check_available()
        return backend


class Slot:
    """A measuring slot: one device (a claimed core, or the GPU Ray assigned), one job at a time."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.core, self._claim = claim_core() if spec.device == "cpu" else (None, None)
        self.backend = spec.backend_instance()
        self.run_id = uuid.uuid4().hex[:12]
        self.run = run_provenance(environment(self.backend, spec.protocol), spec.protocol)
        self._reference = None

    def describe(self) -> dict[str, Any]:
        """The dataset header this worker would write, and its run's provenance."""
        header = campaign_header(self.backend, self.spec.config, self.spec.protocol, self.spec.seed)
        return {"header": header, "run_id": self.run_id, "run": self.run}

    def measure(self, kind: str, index: int, source: Any = None) -> dict[str, Any]:
        """One job's row columns (without the campaign's shared ones): a sample or repeat of ``index`` (from a
        builder's ``source`` when one was built ahead), or the reference architecture."""
        spec = self.spec
        timestamp = _now()
        if kind == "reference":
            if self._reference is None and self.backend.persistent_runners:
                self._reference = _prepare_reference(self.backend, spec.config)
            cols = reference_columns(self.backend, spec.config, spec.protocol, self._reference)
            return dict(cols, genotype=str(PUBLISHED[REFERENCE]), timestamp=timestamp)
        genotype = sample(spec.seed, index)
        what = f"{'sample' if kind == 'sample' else 'repeat of sample'} {index}"
        if isinstance(source, ModelSource):
            cols = time_model(self.backend, lambda: source, spec.protocol, what)
        elif isinstance(source, dict):  # the builder could not build it: its error row, the campaign goes on
            cols = source
        else:
            cols = time_genotype(self.backend, genotype, spec.config, spec.protocol, what)
        return dict(cols, genotype=str(genotype), timestamp=timestamp)


class Builder:
    """Prepares architectures ahead of the slots, on a core they do not hold."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.core, self._claim = claim_core(highest_first=True)
        self.backend = spec.backend_instance()

    def build(self, index: int) -> Any:
        """``index``'s model source, prebuilt; an architecture that cannot be built is a dict of error columns."""
        genotype = sample(self.spec.seed, index)
        t0 = time.perf_counter_ns()
        try:
            return self.backend.prebuild(ModelSource.of(build(genotype, self.spec.config)))
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            return error_columns(self.backend, f"building sample {index}", exc, (time.perf_counter_ns() - t0) / 1e6)


@dataclass
class _Worker:
    actor: Any
    run_id: str
    since_reference: int | None = None  # samples since its last reference timing; None: none yet
    job: tuple[str, int] | None = None


@dataclass
class RayCampaignResult(CampaignResult):
    workers: int = 0
    requeued: int = 0  # jobs lost with a worker that died, queued again
    replaced: int = 0  # actors that died and were replaced
    refused: list[str] = field(default_factory=list)  # why workers were refused


class _Campaign:
    """The driver's state: the slots, the builders, the queue of sample indices and the jobs in flight."""

    def __init__(self, ray: Any, spec: Spec, writer: Any, out: str, force: bool, resources: dict[str, Any],
                 log: Log):
        self.ray, self.spec, self.writer, self.out, self.force, self.log = ray, spec, writer, out, force, log
        self.slot_cls, self.resources = ray.remote(max_restarts=0)(Slot), resources
        self.builder_cls = ray.remote(max_restarts=0)(Builder)
        self.slots: list[_Worker] = []
        self.builders: list[Any] = []
        self.actors: dict[str, Any] = {}  # name -> every actor started, to stop them all at the end
        self.refused: list[str] = []
        self.runs: dict[str, dict[str, Any]] = {}  # run id -> provenance of each admitted slot

    def start_slot(self) -> tuple[_Worker, dict[str, Any]]:
        name = f"latkit-slot-{uuid.uuid4().hex[:12]}"
        actor = self.actors[name] = self.slot_cls.options(name=name, **self.resources).remote(self.spec)
        info = self.get(actor.describe.remote())
        return _Worker(actor, info["run_id"]), info

    def start_builder(self) -> Any:
        name = f"latkit-builder-{uuid.uuid4().hex[:12]}"
        actor = self.actors[name] = self.builder_cls.options(name=name, num_cpus=1).remote(self.spec)
        return actor

    def admit(self, worker: _Worker, info: dict[str, Any]) -> bool:
        """Use the worker if it measures what the dataset holds; refuse it (and say why) if not."""
        diff = header_diff(self.writer.header, info["header"], with_environment=not self.force)
        if diff:
            reason = (f"worker on {info['run']['host']} refused: its {', '.join(diff)} differ from {self.out}'s "
                      "(measure there into another --out, or --force where only the environment differs)")
            self.refused.append(reason)
            self.log(reason)
            self.ray.kill(worker.actor)
            return False
        self.writer.add_run(worker.run_id, info["run"])
        self.runs[worker.run_id] = info["run"]
        self.slots.append(worker)
        return True

    def get(self, ref: Any) -> Any:
        return _get(self.ray, ref)

    def alive(self, actor: Any) -> bool:
        """Whether Ray still knows the actor, asked of Ray's registry: a call to the actor itself would queue behind
        a build that may take minutes (a torch.compile) and mistake a busy builder for a dead one."""
        name = next(n for n, a in self.actors.items() if a is actor)
        try:
            self.ray.get_actor(name)
        except ValueError:
            return False
        return True

    def stop(self) -> None:
        for actor in self.actors.values():
            self.ray.kill(actor)


def run_campaign_ray(spec: Spec, *, count: int, out: str, address: str = "local", workers: int | None = None,
                     builders: int = 0, ahead: int = 2, shard: Shard = Shard(), force: bool = False,
                     reference_every: int = 100, repeat_every: int = 20, retry_errors: bool = False,
                     max_consecutive_failures: int = 10, max_replacements: int = 10, indices: list[int] | None = None,
                     progress: Progress | None = None, log: Log = lambda line: None) -> RayCampaignResult:
    """``run_campaign`` on Ray: ``workers`` measuring slots (default: one per GPU, or per CPU less the builders, of
    the cluster) and ``builders`` builder actors keeping ``ahead`` architectures per slot prepared. Same rows, same
    store, same resume; a worker that dies is replaced (at most ``max_replacements`` times), a mismatched one is
    refused. Every actor is stopped when the campaign ends."""
    from latkit.datasets.store import open_writer

    if workers is not None and workers < 1 or builders < 0 or ahead < 1:
        raise LatkitError("--workers and --ahead must be >= 1, --builders >= 0")
    ray = connect(address, num_cpus=None if workers is None else workers * spec.protocol.threads + builders)
    gpu = spec.device != "cpu"
    resources = {"num_gpus": 1, "num_cpus": 1} if gpu else {"num_cpus": spec.protocol.threads}
    if workers is None:
        total = ray.cluster_resources()
        cpus = int(total.get("CPU", 1))
        workers = max(1, int(total.get("GPU", 0)) if gpu else (cpus - builders) // spec.protocol.threads)
    dead = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.ObjectLostError,
            ray.exceptions.NodeDiedError, getattr(ray.exceptions, "OutOfMemoryError", ray.exceptions.RayError))
    start = time.perf_counter()
    c = _Campaign(ray, spec, None, out, force, resources, log)
    try:
        # the first slot's header names the campaign: its machine measures, not the driver's
        first, info = c.start_slot()
        c.writer, existing = open_writer(out, info["header"], force=force)
        try:
            return _drive(c, first, info, existing, dead, count=count, workers=workers, builders=builders,
                          ahead=ahead, shard=shard, reference_every=reference_every, repeat_every=repeat_every,
                          retry_errors=retry_errors, max_consecutive_failures=max_consecutive_failures,
                          max_replacements=max_replacements, indices=indices, progress=progress, start=start)
        finally:
            c.writer.close()
    finally:
        c.stop()


def _drive(c: _Campaign, first: _Worker, info: dict[str, Any], existing: Any, dead: tuple, *, count: int,
           workers: int, builders: int, ahead: int, shard: Shard, reference_every: int, repeat_every: int,
           retry_errors: bool, max_consecutive_failures: int, max_replacements: int, indices: list[int] | None,
           progress: Progress | None, start: float) -> RayCampaignResult:
    """The scheduling loop: one job per slot in flight, builders ahead of the queue, rows written as they land."""
    spec, ray, writer = c.spec, c.ray, c.writer
    todo, done, skipped, retried = plan(existing, count, indices, shard, retry_errors)
    c.admit(first, info)
    for _ in range(min(workers, len(todo)) - 1):
        c.admit(*c.start_slot())
    if not c.slots:
        raise LatkitError(f"every worker was refused: {c.refused[0]}")
    c.builders = [c.start_builder() for _ in range(builders)] if todo else []
    if todo:
        where = ", ".join(f"{r['host']}:{','.join(map(str, r['cpus'] or []))}" for r in
                          (c.runs[w.run_id] for w in c.slots))
        c.log(f"{len(c.slots)} measuring slots (host:core {where}), {len(c.builders)} builders; {len(todo)} to measure")
    base = row_base(spec.backend, spec.device, spec.config, spec.seed, "")
    queue = collections.deque(todo)
    repeats: collections.deque[int] = collections.deque()  # samples after which a repeat is due
    built: dict[int, Any] = {}  # sample index -> ObjectRef of its prebuilt source
    in_flight: dict[Any, _Worker] = {}
    finished = failures = streak = requeued = replaced = turn = 0

    def submit(worker: _Worker) -> None:
        if reference_every > 0 and queue and (worker.since_reference is None or worker.since_reference >= reference_every):
            job = ("reference", -1)
        elif repeats:
            job = ("repeat", repeat_of(spec.seed, repeats.popleft(), done))
        elif queue:
            job = ("sample", queue.popleft())
        else:
            worker.job = None
            return
        worker.job = job
        source = built.pop(job[1], None) if job[0] == "sample" else None
        in_flight[worker.actor.measure.remote(job[0], job[1], source)] = worker

    def top_up() -> None:
        nonlocal turn
        for index in list(queue)[:ahead * len(c.slots)] if c.builders else []:
            if index not in built:
                built[index] = c.builders[turn % len(c.builders)].build.remote(index)
                turn += 1

    top_up()
    for worker in list(c.slots):
        submit(worker)
    while in_flight:
        ref = ray.wait(list(in_flight), num_returns=1)[0][0]
        worker = in_flight.pop(ref)
        kind, index = worker.job
        try:
            cols = c.get(ref)
        except dead as exc:
            requeued += 1
            if kind == "sample":
                queue.appendleft(index)
            for i, b in enumerate(c.builders):
                if not c.alive(b):
                    c.builders[i] = c.start_builder()
                    replaced += 1
                    built.clear()  # its sources are lost; prebuild again
            slot_died = not c.alive(worker.actor)
            replaced += slot_died
            if replaced > max_replacements:
                raise LatkitError(f"workers died {replaced} times; {c.out} keeps every row written, rerun to resume") \
                    from None
            if slot_died:
                c.slots.remove(worker)
                if not c.admit(*c.start_slot()):
                    raise LatkitError(f"a replacement worker was refused: {c.refused[-1]}") from None
                worker = c.slots[-1]
            c.log(f"a worker died ({type(exc).__name__}): {kind} {index} queued again, the worker replaced")
            top_up()
            submit(worker)
            continue
        row = dict(base, run_id=worker.run_id, kind=kind, index=index, **cols)
        writer.append(row)
        if kind == "reference":
            worker.since_reference = 0
        else:
            streak = 0 if row["status"] == "ok" else streak + 1
            if max_consecutive_failures and streak >= max_consecutive_failures:
                raise TooManyFailures(f"stopped after {streak} consecutive failures on {spec.backend}/{spec.device} "
                                      f"(last: {row['error']}); {c.out} keeps every row written, rerun to resume "
                                      "(--retry-errors measures the failed ones again)")
        if kind == "sample":
            worker.since_reference = (worker.since_reference or 0) + 1
            failures += row["status"] != "ok"
            done.add(index)
            finished += 1
            if repeat_every > 0 and finished % repeat_every == 0:
                repeats.append(index)
            if progress:
                progress(finished, len(todo), failures)
        top_up()
        submit(worker)
    return RayCampaignResult(finished, failures, skipped, time.perf_counter() - start, retried, writer.dropped_line,
                             writer.set_aside, workers=len(c.slots), requeued=requeued, replaced=replaced,
                             refused=c.refused)


def ray_runners(address: str, cpus_per_job: int = 1, gpus_per_job: float = 0,
                measure_gpus: float = 0) -> tuple[Callable[[list[Any]], list[Any]], Callable[[list[Any]], list[Any]]]:
    """``run_sweep``'s two runners on Ray: searches and trainings as tasks side by side, each asking for
    ``cpus_per_job`` CPUs and ``gpus_per_job`` GPUs; measurements one at a time, each task on a core it claims
    (``measure_gpus``: and a GPU), so no two timings ever share a device."""
    ray = connect(address, log_to_driver=True)
    work = ray.remote(_run_job).options(num_cpus=cpus_per_job, num_gpus=gpus_per_job)
    slot = ray.remote(_run_pinned).options(num_cpus=1, num_gpus=measure_gpus)

    def parallel(jobs: list[Any]) -> list[Any]:
        return list(_get(ray, [work.remote(job) for job in jobs]))

    def one_at_a_time(jobs: list[Any]) -> list[Any]:
        return [_get(ray, slot.remote(job)) for job in jobs]

    return parallel, one_at_a_time


def _print(line: str) -> None:
    print(line, flush=True)


def _run_job(job: Any) -> Any:
    return job(_print)


def _run_pinned(job: Any) -> Any:
    """Run ``job`` on a claimed core; the worker process gets its CPUs and the core back afterwards."""
    cpus = os.sched_getaffinity(0)
    _, claim = claim_core()
    try:
        return job(_print)
    finally:
        claim.close()
        os.sched_setaffinity(0, cpus)
