"""Measurement campaigns: sample architectures, time each on a backend, append to its dataset (resumable)."""
from __future__ import annotations

import datetime as dt
import random
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from latkit.backends.base import Backend, MeasureProtocol, Timing, measure
from latkit.datasets.store import STAGE_COLUMNS, STAT_COLUMNS, FORMAT, FORMAT_VERSION, open_writer
from latkit.env import fingerprint
from latkit.errors import LatkitError
from latkit.network import NetConfig, build
from latkit.space import ENCODING_VERSION, PUBLISHED, SAMPLER_VERSION, Genotype, sample

REFERENCE = "DARTS_V2"


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


def campaign_header(backend: Backend, config: NetConfig, protocol: MeasureProtocol, seed: int) -> dict[str, Any]:
    """The dataset header: what the rows were measured with."""
    env = fingerprint(backend.device)
    env.update(backend.versions())
    env["threads"] = protocol.threads
    return {"format": FORMAT, "version": FORMAT_VERSION, "backend": backend.name, "device": backend.device,
            "device_name": backend.device_name(), "config": config.to_dict(), "protocol": protocol.to_dict(),
            "seed": seed, "sampler_version": SAMPLER_VERSION, "encoding_version": ENCODING_VERSION,
            "reference": REFERENCE, "environment": env}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def time_genotype(backend: Backend, genotype: Genotype, config: NetConfig, protocol: MeasureProtocol
                  ) -> dict[str, Any]:
    """Build, prepare and time one architecture; returns the row's measurement columns (status 'error' on failure)."""
    row: dict[str, Any] = {c: None for c in STAT_COLUMNS + STAGE_COLUMNS}
    t0 = time.perf_counter_ns()
    try:
        model = build(genotype, config)
        t1 = time.perf_counter_ns()
        runner = backend.prepare(model)
        t2 = time.perf_counter_ns()
        timing = measure(runner, protocol)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # recorded, the campaign goes on
        row.update(status="error", error=f"{type(exc).__name__}: {exc}"[:500], n=0,
                   build_ms=(time.perf_counter_ns() - t0) / 1e6)
        return row
    row.update(timing.stats.to_dict())
    row.update(status="ok", error="", build_ms=(t1 - t0) / 1e6, prepare_ms=(t2 - t1) / 1e6, **_loop_times(timing))
    return row


def _loop_times(timing: Timing) -> dict[str, float]:
    return {"warmup_ms": timing.warmup_ms, "timing_ms": timing.wall_ms, "timing_cpu_ms": timing.cpu_ms,
            "attempts": timing.attempts}


Progress = Callable[[int, int, int], None]  # (done, total, failures)


@dataclass
class CampaignResult:
    measured: int
    failures: int
    skipped: int
    seconds: float


def run_campaign(backend: Backend, config: NetConfig, protocol: MeasureProtocol, *, seed: int, count: int,
                 out: str | Path, shard: Shard = Shard(), force: bool = False, reference_every: int = 100,
                 repeat_every: int = 20, progress: Progress | None = None) -> CampaignResult:
    """Measure sample indices ``0..count-1`` of ``shard`` that ``out`` does not hold yet."""
    backend.check_available()
    header = campaign_header(backend, config, protocol, seed)
    writer, existing = open_writer(out, header, force=force)
    done: set[int] = set()
    if existing is not None:
        t = existing.table
        done = {i for k, i in zip(t.column("kind").to_pylist(), t.column("index").to_pylist()) if k == "sample"}
    todo = [i for i in range(count) if i in shard and i not in done]
    skipped = len(done)
    run_id = uuid.uuid4().hex[:12]
    base = {"seed": seed, "backend": backend.name, "device": backend.device, "run_id": run_id,
            **{k: getattr(config, k) for k in ("batch", "resolution", "channels", "layers")}}
    reference = backend.prepare(build(PUBLISHED[REFERENCE], config)) if todo and reference_every > 0 else None

    def time_reference() -> None:
        row = dict(base, kind="reference", index=-1, genotype=str(PUBLISHED[REFERENCE]), timestamp=_now())
        timing = measure(reference, protocol)
        row.update(timing.stats.to_dict(), status="ok", error="", **_loop_times(timing))
        writer.append(row)

    failures, start = 0, time.perf_counter()
    try:
        if reference is not None:
            time_reference()
        for pos, index in enumerate(todo):
            genotype = sample(seed, index)
            row = dict(base, kind="sample", index=index, genotype=str(genotype), timestamp=_now())
            row.update(time_genotype(backend, genotype, config, protocol))
            writer.append(row)
            failures += row["status"] != "ok"
            done.add(index)
            if repeat_every > 0 and (pos + 1) % repeat_every == 0:
                # an earlier sample picked at random, often measured long ago: the noise floor then includes
                # slow changes of the machine, not only run-to-run jitter
                again = random.Random(f"{seed}:{index}").choice(sorted(done))
                g = sample(seed, again)
                writer.append(dict(base, kind="repeat", index=again, genotype=str(g), timestamp=_now(),
                                   **time_genotype(backend, g, config, protocol)))
            if reference is not None and (pos + 1) % reference_every == 0:
                time_reference()
            if progress:
                progress(pos + 1, len(todo), failures)
    finally:
        writer.compact()
    return CampaignResult(len(todo), failures, skipped, time.perf_counter() - start)


def default_dataset_name(backend: str, device: str, config: NetConfig) -> str:
    """File name of the dataset for a backend and configuration, e.g. ``onnxruntime_cpu_b1_r32_c36_l20.parquet``."""
    return f"{backend}_{device}_b{config.batch}_r{config.resolution}_c{config.channels}_l{config.layers}.parquet"

