"""``latkit sweep --ray``: each lambda's search and each training as a Ray task, measurements one at a time on a
claimed core (``latkit.cluster`` connects and claims)."""
from __future__ import annotations

import os
from typing import Any, Callable

from latkit.cluster import claim_cores, connect, get_results


def ray_runners(address: str, threads: int = 1, search_device: str = "cpu",
                measure_devices: list[str] | tuple[str, ...] = ("cpu",)) -> tuple[Callable[[list[Any]], list[Any]],
                                                                              Callable[[list[Any]], list[Any]]]:
    """``run_sweep``'s two runners on Ray: searches and trainings as tasks side by side, each asking for ``threads``
    CPUs and, searching on a GPU, a GPU; measurements one at a time, each task on a core it claims (and a GPU when
    any measured device is one), so no two timings ever share a device."""
    cpus_per_job, gpus_per_job = threads, 1 if search_device != "cpu" else 0
    measure_gpus = 1 if any(d != "cpu" for d in measure_devices) else 0
    ray = connect(address, log_to_driver=True)
    work = ray.remote(_run_job).options(num_cpus=cpus_per_job, num_gpus=gpus_per_job)
    slot = ray.remote(_run_pinned).options(num_cpus=1, num_gpus=measure_gpus)

    def parallel(jobs: list[Any]) -> list[Any]:
        return list(get_results(ray, [work.remote(job) for job in jobs]))

    def one_at_a_time(jobs: list[Any]) -> list[Any]:
        return [get_results(ray, slot.remote(job)) for job in jobs]

    return parallel, one_at_a_time


def _print(line: str) -> None:
    print(line, flush=True)


def _run_job(job: Any) -> Any:
    return job(_print)


def _run_pinned(job: Any) -> Any:
    """Run ``job`` on a claimed core; the worker process gets its CPUs and the core back afterwards."""
    cpus = os.sched_getaffinity(0)
    _, claims = claim_cores()
    try:
        return job(_print)
    finally:
        for claim in claims:
            claim.close()
        os.sched_setaffinity(0, cpus)
