"""The one campaign engine: which architectures are measured, in what order, with which re-measurements, and what
becomes of failures and lost workers; every row goes through its one writer.

An executor runs the jobs the engine hands it: ``LocalExecutor`` in this process, or ``latkit.cluster``'s Ray
slots and builders. Each job is timed by a ``Worker`` (one device: a core or a GPU), which in the duet protocol
holds the campaign's reference, so a change of protocol touches this module and ``latkit.measure`` only.

Policy, in one place:
- the plan: sample indices ``0..count-1`` (or ``indices``) of the shard that the file does not hold yet (with
  ``retry_errors``, also those it holds only error rows for);
- after every ``repeat_every`` finished samples, a successful earlier sample is measured again (a ``repeat`` row:
  the noise floor);
- every ``reference_every`` samples a worker times DARTS_V2 as it times a sample (a ``reference`` row: drift);
  it comes first on each worker, so a backend that cannot run it stops the campaign before any architecture;
- on a file whose unit is frozen with anchors, each worker next re-times those anchors (``anchor`` rows), and one
  of them in turn with each later reference row (a process's level settles over its first minutes on OpenVINO):
  the median of their ratios against the file's is its run's level (``Dataset.levels``), so rows it adds on
  another day or host are in the file's unit;
- ``max_consecutive_failures`` failed architectures in a row stop the campaign (the backend is broken): samples
  only, a repeat (an architecture measured before) neither counts nor breaks the streak;
- a job whose worker dies is queued again at the front; an architecture that killed ``max_deaths`` workers
  becomes an error row, so a resume passes it.
"""
from __future__ import annotations

import collections
import math
import os
import random
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

from latkit.backends.base import Backend, ModelSource
from latkit.backends.timing import MeasureProtocol
from latkit.datasets.store import Dataset, Writer, open_writer
from latkit.errors import LatkitError, one_line
from latkit.measure import (REFERENCE, Reference, ReferenceFailure, campaign_header, environment, failed_columns, now,
                            reference_source, run_provenance, time_genotype, time_model)
from latkit.network import NetConfig
from latkit.space import PUBLISHED, sample

Progress = Callable[[int, int, int], None]  # (done, total, failures)
MAX_DEATHS = 2  # workers an architecture may kill before it is recorded as an error row


# A campaign's defaults, said once (the CLI's defaults read these): the reference timed as a sample every this many
# samples (its drift), an earlier sample re-measured every this many (the noise floor), and the campaign stopped after
# this many failed architectures in a row.
REFERENCE_EVERY = 100
REPEAT_EVERY = 20
MAX_CONSECUTIVE_FAILURES = 10


@dataclass(frozen=True)
class Shard:
    """Shard ``k`` of ``n`` (1-based): sample indices ``i`` with ``i % n == k - 1``."""

    k: int = 1
    n: int = 1

    @classmethod
    def parse(cls, text: str) -> "Shard":
        try:
            k, n = (int(x) for x in text.split("/"))
        except ValueError:
            raise LatkitError(f"--shard must look like K/N (e.g. 2/4), got {text!r}") from None
        if not 1 <= k <= n:
            raise LatkitError(f"--shard K/N needs 1 <= K <= N, got {text!r}")
        return cls(k, n)

    def __contains__(self, index: int) -> bool:
        return index % self.n == self.k - 1


@dataclass(frozen=True)
class Job:
    """One timing: ``kind`` 'sample', 'repeat' or 'anchor' of sample ``index``, or 'reference' (index -1)."""

    kind: str
    index: int


@dataclass(frozen=True)
class Died:
    """What a job returns when it was lost with a worker (killed, out of memory, a crash in the runtime):
    ``its_own`` when the worker that ran it died (the architecture may have killed it), False when another died
    under it (a builder whose prebuilt model it waited for)."""

    reason: str
    its_own: bool = True


class Worker:
    """Times a campaign's jobs on one device. In the duet protocol it holds the reference, prepared once."""

    def __init__(self, backend: Backend, config: NetConfig, protocol: MeasureProtocol, seed: int,
                 burn_in_s: float = 0.0):
        if not 0 <= burn_in_s < math.inf:
            raise LatkitError(f"burn-in must be a finite number of seconds >= 0, got {burn_in_s}")
        self.backend, self.config, self.protocol, self.seed = backend, config, protocol, seed
        self.reference = Reference(backend, reference_source(config)) if protocol.duet else None
        self.run_id = uuid.uuid4().hex[:12]
        self.run = dict(run_provenance(environment(backend, protocol), protocol), burn_in_s=burn_in_s)
        self.burn_in_s, self.burnt_in = burn_in_s, False

    def header(self) -> dict[str, Any]:
        """The dataset header this worker's rows belong under."""
        return campaign_header(self.backend, self.config, self.protocol, self.seed)

    def check(self) -> None:
        """Before the first job: the reference must run here (else one line, nothing measured)."""
        if self.reference is not None:
            self.reference.check(self.protocol)

    def measure(self, job: Job, source: ModelSource | dict[str, Any] | None = None) -> dict[str, Any]:
        """The row's columns for ``job`` (all but the campaign's shared ones): ``source`` is what a builder
        prepared ahead (a dict: its error columns), else the architecture is built here. The first job waits for
        the burn-in."""
        if not self.burnt_in:
            self.burn_in()
            self.burnt_in = True
        timestamp = now()
        genotype = PUBLISHED[REFERENCE] if job.kind == "reference" else sample(self.seed, job.index)
        what = {"sample": f"sample {job.index}", "repeat": f"repeat of sample {job.index}",
                "anchor": f"anchor {job.index}"}.get(job.kind, job.kind)
        if isinstance(source, dict):
            cols = source
        elif isinstance(source, ModelSource):
            cols = time_model(self.backend, lambda: source, self.protocol, what, self.reference)
        else:
            cols = time_genotype(self.backend, genotype, self.config, self.protocol, what, self.reference)
        return dict(cols, genotype=str(genotype), timestamp=timestamp)

    def burn_in(self) -> None:
        """Time DARTS_V2, built afresh each time, as a reference row would be, for ``burn_in_s`` seconds, and throw
        the timings away (``ReferenceFailure`` if one fails). On the ONNX runtimes a process's first minutes measure
        low beside its reference (benchmarks/RESULTS.md, "A drift the duet does not cancel"). It runs before the
        worker's first job, inside it: on Ray a slot that dies in its burn-in counts against that job, as one that
        dies preparing it would."""
        end = time.perf_counter() + self.burn_in_s
        while time.perf_counter() < end:
            cols = time_genotype(self.backend, PUBLISHED[REFERENCE], self.config, self.protocol, "burn-in",
                                 self.reference)
            if cols["status"] != "ok":
                raise ReferenceFailure(f"{self.backend.name}/{self.backend.device} failed to run the reference "
                                       f"{REFERENCE} in the burn-in: {cols['error']}")

    def close(self) -> None:
        if self.reference is not None:
            self.reference.close()


class Executor(Protocol):
    """Runs the engine's jobs on workers. ``lookahead``: how many upcoming sample indices ``prefetch`` wants."""

    lookahead: int
    workers: int
    replaced: int
    refused: list[str]

    def header(self) -> dict[str, Any]:
        """The header of the dataset the workers measure for."""

    def start(self, writer: Writer, jobs: int) -> None:
        """Start the workers (at most ``jobs`` are useful), each checked and recorded as a run on ``writer``."""

    def idle(self) -> list[str]:
        """Ids of the workers waiting for a job."""

    def submit(self, worker: str, job: Job) -> None: ...

    def busy(self) -> bool:
        """Whether a job is in flight."""

    def wait(self) -> tuple[str, Job, dict[str, Any] | Died]:
        """The next finished job: (worker id, job, its row columns or how its worker died)."""

    def prefetch(self, indices: list[int]) -> None:
        """The sample indices due next (builders prepare them ahead)."""

    def stop(self) -> None: ...


class LocalExecutor:
    """One worker, in this process, one job at a time."""

    lookahead, replaced = 0, 0

    def __init__(self, backend: Backend, config: NetConfig, protocol: MeasureProtocol, seed: int,
                 burn_in_s: float = 0.0):
        self.worker = Worker(backend, config, protocol, seed, burn_in_s)
        self.workers, self.refused = 1, []
        self._job: Job | None = None

    def header(self) -> dict[str, Any]:
        return self.worker.header()

    def start(self, writer: Writer, jobs: int) -> None:
        writer.add_run(self.worker.run_id, self.worker.run)
        self.worker.check()

    def idle(self) -> list[str]:
        return [] if self._job else [self.worker.run_id]

    def submit(self, worker: str, job: Job) -> None:
        self._job = job

    def busy(self) -> bool:
        return self._job is not None

    def wait(self) -> tuple[str, Job, dict[str, Any] | Died]:
        job, self._job = self._job, None
        return self.worker.run_id, job, self.worker.measure(job)

    def prefetch(self, indices: list[int]) -> None:
        pass

    def stop(self) -> None:
        self.worker.close()


@dataclass
class CampaignResult:
    measured: int
    failures: int
    skipped: int
    seconds: float
    retried: int = 0  # indices measured again because their only rows were errors (retry_errors)
    dropped_line: int | None = None  # a torn last journal line (a crash mid-write) cut off before appending
    set_aside: int = 0  # unreadable journal lines compaction moved to FILE.journal.rejected
    workers: int = 1
    requeued: int = 0  # jobs lost with a worker that died, queued again
    replaced: int = 0  # workers that died and were replaced
    killers: int = 0  # architectures recorded as error rows after killing max_deaths workers
    refused: list[str] = field(default_factory=list)  # why workers were refused


class TooManyFailures(LatkitError):
    """``max_consecutive_failures`` architectures in a row failed: the backend, not the architectures, is broken."""


def _indices(ds: Dataset | None, ok_only: bool) -> set[int]:
    """Sample indices ``ds`` holds a row for (only ok rows with ``ok_only``)."""
    return set() if ds is None else set(ds.samples(ok_only=ok_only).column("index").to_pylist())


def plan(existing: Dataset | None, count: int, indices: list[int] | None, shard: Shard,
         retry_errors: bool) -> tuple[list[int], set[int], int, int]:
    """(indices to measure, indices measured successfully, how many are skipped as done, how many of the todo are
    retried errors)."""
    ok = _indices(existing, ok_only=True)
    attempted = _indices(existing, ok_only=False)
    done = ok if retry_errors else attempted
    wanted = [i for i in (range(count) if indices is None else indices) if i in shard]
    todo = [i for i in wanted if i not in done]
    return todo, ok, len(wanted) - len(todo), sum(i in attempted for i in todo)


def row_base(backend: str, device: str, config: dict[str, Any], seed: int) -> dict[str, Any]:
    """The columns every row of a campaign shares (``config``: the header's network configuration)."""
    return {"seed": seed, "backend": backend, "device": device,
            **{k: config[k] for k in ("batch", "resolution", "channels", "layers")}}


def repeat_of(seed: int, index: int, measured: Iterable[int]) -> int:
    """The earlier successful sample re-measured after ``index``: picked at random, often measured long ago, so the
    noise floor includes slow changes of the machine, not only run-to-run jitter."""
    return random.Random(f"{seed}:{index}").choice(sorted(measured))


def run(executor: Executor, *, seed: int, count: int, out: str | Path, shard: Shard = Shard(), force: bool = False,
        reference_every: int = REFERENCE_EVERY, repeat_every: int = REPEAT_EVERY, retry_errors: bool = False,
        max_consecutive_failures: int = MAX_CONSECUTIVE_FAILURES, max_deaths: int = MAX_DEATHS, indices: list[int] | None = None,
        progress: Progress | None = None) -> CampaignResult:
    """Measure the plan on ``executor``'s workers into ``out`` (locked against other writers throughout; every row
    written is kept, whatever stops the campaign). Stops with ``TooManyFailures`` after
    ``max_consecutive_failures`` failed architectures in a row (0: never), with ``MeasurementBug`` on a
    programming error, and with ``ReferenceFailure`` when the reference cannot run."""
    if max_consecutive_failures < 0 or max_deaths < 1:
        raise LatkitError(f"max_consecutive_failures must be >= 0 and max_deaths >= 1, got "
                          f"{max_consecutive_failures} and {max_deaths}")
    start = time.perf_counter()
    try:
        header = executor.header()
        writer, existing = open_writer(out, header, force=force, freeze=shard.n == 1)  # a shard's unit: at merge
        try:
            todo, measured, skipped, retried = plan(existing, count, indices, shard, retry_errors)
            anchors = existing.anchors() if existing is not None and existing.duet else []
            engine = _Engine(executor, writer, header, seed, reference_every, repeat_every, max_consecutive_failures,
                             max_deaths, measured, len(todo), progress, str(out), anchors)
            if todo:
                executor.start(writer, len(todo))
                engine.drive(todo)
        finally:
            writer.close()
    finally:
        executor.stop()
    return CampaignResult(engine.finished, engine.failures, skipped, time.perf_counter() - start, retried,
                          writer.dropped_line, writer.set_aside, executor.workers, engine.requeued, executor.replaced,
                          engine.killers, executor.refused)


def run_campaign(backend: Backend, config: NetConfig, protocol: MeasureProtocol, *, seed: int, count: int,
                 out: str | Path, pin_cpu: int | None = None, burn_in_s: float = 0.0,
                 **policy: Any) -> CampaignResult:
    """``run`` in this process: one worker on ``backend``, on core ``pin_cpu`` alone when given (Linux: away from
    other work; the process stays pinned), burnt in for ``burn_in_s`` seconds before its first job."""
    if pin_cpu is not None:
        try:
            os.sched_setaffinity(0, {pin_cpu})
        except (AttributeError, OSError, ValueError) as exc:
            raise LatkitError(f"cannot pin to CPU {pin_cpu}: {exc}") from None
    backend.check_available()
    return run(LocalExecutor(backend, config, protocol, seed, burn_in_s), seed=seed, count=count, out=out, **policy)


class _Engine:
    """The scheduling state of one campaign: the queues, the counters, and what each landed job becomes."""

    def __init__(self, executor: Executor, writer: Writer, header: dict[str, Any], seed: int, reference_every: int,
                 repeat_every: int, max_failures: int, max_deaths: int, measured: set[int], total: int,
                 progress: Progress | None, out: str, anchors: Iterable[int] = ()):
        self.executor, self.writer, self.seed, self.out = executor, writer, seed, out
        self.reference_every, self.repeat_every = reference_every, repeat_every
        self.max_failures, self.max_deaths = max_failures, max_deaths
        self.measured, self.total, self.progress = measured, total, progress
        self.base = row_base(header["backend"], header["device"], header["config"], seed)
        self.queue: collections.deque[Job] = collections.deque()
        self.repeats: collections.deque[Job] = collections.deque()
        self.since_reference: dict[str, int] = {}  # worker -> samples since its last reference row
        self.anchors = list(anchors)
        self.anchors_due: dict[str, collections.deque[Job]] = {}  # worker -> its anchors not yet handed out
        self.anchor_turn = 0  # which anchor is re-timed beside the next reference row
        self.deaths: collections.Counter[int] = collections.Counter()  # sample index -> workers it was lost with
        self.finished = self.failures = self.streak = self.requeued = self.killers = 0

    def drive(self, todo: list[int]) -> None:
        """Hand out jobs until every one has landed."""
        self.queue.extend(Job("sample", i) for i in todo)
        while True:
            ahead = self.executor.lookahead
            self.executor.prefetch([j.index for j, _ in zip(self.queue, range(ahead))] if ahead else [])
            for worker in self.executor.idle():
                job = self.next_job(worker)
                if job is not None:
                    self.executor.submit(worker, job)
            if not self.executor.busy():
                return
            worker, job, outcome = self.executor.wait()
            if isinstance(outcome, Died):
                outcome = self.lost(job, outcome)
                if outcome is None:
                    continue
            self.land(worker, job, outcome)

    def next_job(self, worker: str) -> Job | None:
        due = self.since_reference.get(worker)
        if self.reference_every > 0 and self.queue and (due is None or due >= self.reference_every):
            self.since_reference[worker] = 0  # the reference row is under way
            if worker in self.anchors_due and self.anchors:  # and one anchor more, in turn: the run's level
                self.anchors_due[worker].append(Job("anchor", self.anchors[self.anchor_turn % len(self.anchors)]))
                self.anchor_turn += 1
            return Job("reference", -1)
        if self.queue and worker not in self.anchors_due:
            self.anchors_due[worker] = collections.deque(Job("anchor", i) for i in self.anchors)
        if self.anchors_due.get(worker):
            return self.anchors_due[worker].popleft()
        if self.repeats:
            return self.repeats.popleft()
        return self.queue.popleft() if self.queue else None

    def lost(self, job: Job, died: Died) -> dict[str, Any] | None:
        """A job lost with a worker: queued again at the front; an architecture whose own worker died under it
        ``max_deaths`` times (as a sample or a repeat) becomes its error row instead."""
        if job.kind in ("reference", "anchor"):
            return None  # the dead worker's replacement (a new worker id, a new run) times its own anyway
        if died.its_own:
            self.deaths[job.index] += 1
            if self.deaths[job.index] >= self.max_deaths:
                self.killers += 1
                return dict(failed_columns(f"WorkerDied: architecture {job.index} killed its worker "
                                           f"{self.deaths[job.index]} times (last as a {job.kind}: {died.reason})"),
                            genotype=str(sample(self.seed, job.index)), timestamp=now())
        self.requeued += 1
        (self.queue if job.kind == "sample" else self.repeats).appendleft(job)
        return None

    def land(self, worker: str, job: Job, cols: dict[str, Any]) -> None:
        """Write the row; count it; schedule a repeat when one is due; stop after too many failures in a row."""
        row = dict(self.base, run_id=worker, kind=job.kind, index=job.index, **cols)
        self.writer.append(row)
        ok = row["status"] == "ok"
        if job.kind == "reference":
            if not ok:
                raise ReferenceFailure(f"{row['backend']}/{row['device']} cannot run the reference {REFERENCE}: "
                                       f"{row['error']}; {self.out} keeps every row written")
            return
        if job.kind == "sample":
            self.streak = 0 if ok else self.streak + 1
            self.since_reference[worker] = self.since_reference.get(worker, 0) + 1
            self.failures += not ok
            self.finished += 1
            if ok:
                self.measured.add(job.index)
            if self.repeat_every > 0 and self.finished % self.repeat_every == 0 and self.measured:
                self.repeats.append(Job("repeat", repeat_of(self.seed, job.index, self.measured)))
            if self.progress:
                self.progress(self.finished, self.total, self.failures)
        if self.max_failures and self.streak >= self.max_failures:
            raise TooManyFailures(f"stopped after {self.streak} consecutive failures on {row['backend']}/"
                                  f"{row['device']} (last: {one_line(row['error'], None)}); {self.out} keeps every "
                                  "row written, rerun to resume (--retry-errors measures the failed ones again)")
