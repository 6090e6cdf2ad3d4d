"""Measurement campaigns on a Ray cluster (``latkit measure --ray``).

The campaign engine (``latkit.campaign``) runs on the driver: it keeps the one crash-safe store (the single writer)
and the policy, and ``RayExecutor`` hands its jobs to measuring slots, Ray actors that each own one device: a whole
GPU (``num_gpus=1``) or, for CPU backends, as many cores as the protocol has threads, claimed on its node and pinned
to. Never two timings on one device at once: a slot runs one job at a time, and a core is claimed
through a lock file that only one process on the node can hold. Optional builder actors, on cores the slots do not
use, prepare architectures a few ahead (network build and ONNX export; a torch.compile compilation fills the node's
Inductor cache), so a slot mostly warms up and times.

Faults: a slot or builder that dies (killed, out of memory, node lost) is replaced and its in-flight job queued
again (an architecture that kills two workers becomes an error row; a job lost with a builder is built on its slot
next, and builder replacements count toward the limit); the driver killed with -9 resumes from the store with
``--ray`` again (only finished rows are written, so none is lost or duplicated). A worker whose environment
fingerprint differs from the dataset's is refused with the keys that differ. Each worker is a run of its own in the
dataset's provenance (host, CPUs, environment), so every row names its host through ``run_id``.
"""
from __future__ import annotations

import os
import socket
import tempfile
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from latkit.backends.base import ModelSource
from latkit.backends.timing import MeasureProtocol
from latkit.campaign import CampaignResult, Died, Job, Worker, run
from latkit.datasets.store import header_diff
from latkit.errors import LatkitError, one_line
from latkit.measure import error_columns
from latkit.network import NetConfig, build
from latkit.space import sample

RAY_EXTRA = "pip install 'latkit[ray]'"
START_TIMEOUT_S = 120.0  # a new actor that has not started by then cannot be scheduled (or hangs): one line
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
        raise LatkitError(f"cannot connect to Ray at {address!r}: {one_line(exc, 200)} (start a "
                          "cluster with `ray start --head`, or use --ray local)") from None
    return ray


def get_results(ray: Any, refs: Any, timeout: float | None = None) -> Any:
    """Remote results; the exception a job raised, latkit's own passed through as it is."""
    try:
        return ray.get(refs, timeout=timeout)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        raise cause if isinstance(cause, LatkitError) else LatkitError(one_line(exc, 400)) from None


def claim_cores(count: int = 1, highest_first: bool = False, wait_s: float = 30.0) -> tuple[list[int], list[Any]]:
    """Claim ``count`` cores of this machine no other latkit worker holds (an exclusive lock on a per-core file),
    pin this process to them, and return them with the open lock files (the claim lasts while they stay open)."""
    import fcntl

    cores = sorted(os.sched_getaffinity(0), reverse=highest_first)
    if count > len(cores):
        raise LatkitError(f"a worker needs {count} cores and this process may use {len(cores)} on "
                          f"{socket.gethostname()}")
    deadline = time.monotonic() + wait_s  # a worker of a campaign that just ended may still be exiting
    while True:
        claimed: list[tuple[int, Any]] = []
        for core in cores:
            handle = open(os.path.join(tempfile.gettempdir(), f"latkit-core-{core}.lock"), "w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            claimed.append((core, handle))
            if len(claimed) == count:
                os.sched_setaffinity(0, {c for c, _ in claimed})
                return [c for c, _ in claimed], [h for _, h in claimed]
        for _, handle in claimed:
            handle.close()
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    raise LatkitError(f"{count} free core(s) wanted, but the cores of {socket.gethostname()} ({len(cores)}) are held "
                      "by other latkit workers")


@dataclass(frozen=True)
class Spec:
    """What every worker of a campaign measures with (sent to the actors)."""

    backend: str
    device: str
    options: dict[str, str]
    config: NetConfig
    protocol: MeasureProtocol
    seed: int
    burn_in_s: float = 0.0  # each slot's, before its first job (``Worker.burn_in``)

    def backend_instance(self) -> Any:
        from latkit.backends.registry import get_backend

        backend = get_backend(self.backend, self.device, self.protocol.threads, self.options)
        backend.check_available()
        return backend



class Slot:
    """A measuring slot: one device (claimed cores, one per protocol thread, or the GPU Ray assigned), one job at a
    time, timed by the campaign's ``Worker``."""

    def __init__(self, spec: Spec):
        cpu = spec.device == "cpu"
        self.cores, self._claims = claim_cores(spec.protocol.threads) if cpu else ([], [])
        self.worker = Worker(spec.backend_instance(), spec.config, spec.protocol, spec.seed, spec.burn_in_s)

    def describe(self) -> dict[str, Any]:
        """The dataset header this worker would write, and its run's provenance."""
        return {"header": self.worker.header(), "run_id": self.worker.run_id, "run": self.worker.run}

    def check(self) -> None:
        self.worker.check()

    def measure(self, job: Job, source: Any = None) -> dict[str, Any]:
        return self.worker.measure(job, source)


class Builder:
    """Prepares architectures ahead of the slots, on a core they do not hold."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.cores, self._claims = claim_cores(highest_first=True)
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


class RayExecutor:
    """The engine's jobs on Ray: ``workers`` measuring slots (default: one per GPU, or per ``threads`` free CPUs,
    of the cluster) and ``builders`` builder actors keeping ``ahead`` architectures per slot prepared. The first
    slot's header names the campaign (its machine measures, not the driver's); a later slot whose header differs is
    refused (``force``: only the environment may differ). A slot or builder that dies is replaced, at most
    ``max_replacements`` times. Every actor is stopped at the end."""

    def __init__(self, spec: Spec, address: str = "local", workers: int | None = None, builders: int = 0,
                 ahead: int = 2, force: bool = False, max_replacements: int = 10, log: Log = lambda line: None,
                 start_timeout_s: float = START_TIMEOUT_S):
        if workers is not None and workers < 1 or builders < 0 or ahead < 1:
            raise LatkitError("--workers and --ahead must be >= 1, --builders >= 0")
        self.spec, self.force, self.max_replacements, self.log = spec, force, max_replacements, log
        self.start_timeout_s, self.ahead, self.n_builders = start_timeout_s, ahead, builders
        threads = spec.protocol.threads
        self.ray = ray = connect(address, num_cpus=None if workers is None else workers * threads + builders)
        gpu = spec.device != "cpu"
        self.resources = {"num_gpus": 1, "num_cpus": 1} if gpu else {"num_cpus": threads}
        if workers is None:
            total = ray.cluster_resources()
            workers = max(1, int(total.get("GPU", 0)) if gpu else (int(total.get("CPU", 1)) - builders) // threads)
        self.wanted = workers
        self.dead = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.ObjectLostError,
                     ray.exceptions.NodeDiedError, getattr(ray.exceptions, "OutOfMemoryError", ray.exceptions.RayError))
        self.slot_cls, self.builder_cls = ray.remote(max_restarts=0)(Slot), ray.remote(max_restarts=0)(Builder)
        self.actors: dict[str, Any] = {}  # name -> every actor started, to stop them all at the end
        self.slots: dict[str, Any] = {}  # run id -> admitted slot
        self.runs: dict[str, dict[str, Any]] = {}  # run id -> provenance of each admitted slot
        self.builders: list[Any] = []
        self.built: dict[int, Any] = {}  # sample index -> ObjectRef of its prebuilt source
        self.build_here: set[int] = set()  # samples lost with a builder: the slot builds them itself
        self.built_by_builder: set[Any] = set()  # in-flight jobs whose model a builder prepared
        self.in_flight: dict[Any, tuple[str, Job]] = {}
        self.refused: list[str] = []
        self.replaced = self.workers = self.lookahead = self._turn = 0
        self.writer: Any = None
        self._first: tuple[Any, dict[str, Any]] | None = None

    def header(self) -> dict[str, Any]:
        self._first = self.start_slot()
        return self._first[1]["header"]

    def start(self, writer: Any, jobs: int) -> None:
        self.writer = writer
        self.admit(*self._first)
        for _ in range(min(self.wanted, jobs) - 1):
            self.admit(*self.start_slot())
        if not self.slots:
            raise LatkitError(f"every worker was refused: {self.refused[0]}")
        self.workers = len(self.slots)
        self.builders = [self.start_builder() for _ in range(self.n_builders)]
        self.lookahead = self.ahead * len(self.slots) if self.builders else 0
        where = ", ".join(f"{r['host']}:{','.join(map(str, r['cpus'] or []))}" for r in self.runs.values())
        self.log(f"{len(self.slots)} measuring slots (host:core {where}), {len(self.builders)} builders; {jobs} to "
                 "measure")

    def start_slot(self) -> tuple[Any, dict[str, Any]]:
        name = f"latkit-slot-{uuid.uuid4().hex[:12]}"
        actor = self.actors[name] = self.slot_cls.options(name=name, **self.resources).remote(self.spec)
        return actor, self.started(actor.describe.remote(), "a measuring slot")

    def start_builder(self) -> Any:
        name = f"latkit-builder-{uuid.uuid4().hex[:12]}"
        actor = self.actors[name] = self.builder_cls.options(name=name, num_cpus=1).remote(self.spec)
        return actor

    def started(self, ref: Any, what: str) -> Any:
        """The answer of a new actor's first call: one line if it cannot be scheduled within the time limit (no
        free CPU or GPU of the kind it asks for) or if its constructor fails."""
        try:
            return get_results(self.ray, ref, timeout=self.start_timeout_s)
        except self.ray.exceptions.GetTimeoutError:
            raise LatkitError(f"{what} asking for {self.resources} did not start within {self.start_timeout_s:.0f} s: "
                              f"the Ray cluster has {self.ray.available_resources()} free (fewer --workers, or a "
                              "cluster with the device)") from None
        except self.dead as exc:
            raise LatkitError(f"{what} could not start: {_cause(exc)}") from None

    def admit(self, actor: Any, info: dict[str, Any]) -> bool:
        """Use the worker if it measures what the dataset holds and can run the reference; refuse it (and say why)
        if its header differs."""
        diff = header_diff(self.writer.header, info["header"], with_environment=not self.force)
        if diff:
            reason = (f"worker on {info['run']['host']} refused: its {', '.join(diff)} differ from "
                      f"{self.writer.path}'s (measure there into another --out, or --force where only the environment "
                      "differs)")
            self.refused.append(reason)
            self.log(reason)
            self.ray.kill(actor)
            return False
        self.started(actor.check.remote(), "a measuring slot")
        self.writer.add_run(info["run_id"], info["run"])
        self.runs[info["run_id"]] = info["run"]
        self.slots[info["run_id"]] = actor
        return True

    def idle(self) -> list[str]:
        busy = {worker for worker, _ in self.in_flight.values()}
        return [w for w in self.slots if w not in busy]

    def submit(self, worker: str, job: Job) -> None:
        source = None
        if job.kind == "sample" and job.index not in self.build_here:
            source = self.built.pop(job.index, None)
        ref = self.slots[worker].measure.remote(job, source)
        self.in_flight[ref] = (worker, job)
        if source is not None:
            self.built_by_builder.add(ref)

    def busy(self) -> bool:
        return bool(self.in_flight)

    def wait(self) -> tuple[str, Job, dict[str, Any] | Died]:
        ref = self.ray.wait(list(self.in_flight), num_returns=1)[0][0]
        worker, job = self.in_flight.pop(ref)
        sourced = ref in self.built_by_builder
        self.built_by_builder.discard(ref)
        try:
            return worker, job, get_results(self.ray, ref)
        except self.dead as exc:
            lost: BaseException = exc
        except LatkitError as exc:  # the task failed; if its input came from a builder that died, it was lost with it
            if not (sourced and not all(self.alive(b) for b in self.builders)):
                raise
            lost = exc
        slot_died = self.slot_died(self.slots[worker], lost, sourced)
        self.recover(worker, slot_died, getattr(lost, "actor_id", None))
        if not slot_died:  # lost with a builder: built on the slot next, where a death counts against it
            self.build_here.add(job.index)
        self.log(f"a {'measuring slot' if slot_died else 'builder'} died ({type(lost).__name__}) under {job.kind} "
                 f"{job.index}: the job queued again, the {'slot' if slot_died else 'builder'} replaced")
        return worker, job, Died(_cause(lost), its_own=slot_died)

    def slot_died(self, slot: Any, exc: BaseException, sourced: bool) -> bool:
        """Whether the slot that ran a lost job died. A job whose model no builder prepared can only be lost with
        its slot; Ray's error names the dead actor where it can. Only a prebuilt job's loss that names no actor
        asks Ray's registry, which may still list an actor a while after its death."""
        named = getattr(exc, "actor_id", None)
        if not sourced or (named is not None and named == _actor_id(slot)):
            return True
        return named is None and not self.alive(slot)

    def recover(self, worker: str, slot_died: bool, named: str | None = None) -> None:
        """Replace the dead: builders (their prebuilt sources are lost), the one Ray's error names (``named``)
        included, and the job's slot if it died."""
        for i, b in enumerate(self.builders):
            if (named is not None and _actor_id(b) == named) or not self.alive(b):
                self.replaced += 1
                self.check_replacements()
                self.builders[i] = self.start_builder()
                self.built.clear()
        if not slot_died:
            return
        del self.slots[worker]
        self.replaced += 1
        self.check_replacements()
        if not self.admit(*self.start_slot()):
            raise LatkitError(f"a replacement worker was refused: {self.refused[-1]}")

    def check_replacements(self) -> None:
        if self.replaced > self.max_replacements:
            raise LatkitError(f"workers died {self.replaced} times; {self.writer.path} keeps every row written, "
                              "rerun to resume")

    def prefetch(self, indices: list[int]) -> None:
        for index in indices:
            if index not in self.built and index not in self.build_here:
                self.built[index] = self.builders[self._turn % len(self.builders)].build.remote(index)
                self._turn += 1

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


def _actor_id(actor: Any) -> str | None:
    """An actor handle's id, as Ray's errors name it (hex)."""
    actor_id = getattr(actor, "_actor_id", None)
    return None if actor_id is None else actor_id.hex()


def _cause(exc: BaseException) -> str:
    """The last line of what killed an actor (its constructor's exception, or Ray's reason), whitespace folded."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return one_line(lines[-1] if lines else type(exc).__name__)


def run_campaign_ray(spec: Spec, *, count: int, out: str, address: str = "local", workers: int | None = None,
                     builders: int = 0, ahead: int = 2, force: bool = False, max_replacements: int = 10,
                     log: Log = lambda line: None, start_timeout_s: float = START_TIMEOUT_S,
                     **policy: Any) -> CampaignResult:
    """The campaign engine (``latkit.campaign.run``) on Ray slots and builders: same rows, same store, same
    resume."""
    executor = RayExecutor(spec, address, workers, builders, ahead, force, max_replacements, log, start_timeout_s)
    return run(executor, seed=spec.seed, count=count, out=out, force=force, **policy)
