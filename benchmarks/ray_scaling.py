"""Campaigns on Ray against the plain loop, side by side on this machine: throughput, noise floor, Ray's overhead.

Modes (each a fresh dataset of the same architectures, seed 0, indices 0..N-1, a repeat every 5 for the noise floor):
  local    run_campaign in this process, pinned to core 0 (what `latkit measure --pin-cpu 0` does)
  ray1     run_campaign_ray, 1 measuring slot
  ray2     run_campaign_ray, 2 measuring slots (one per core of this 2-core machine)
  ray1b1   run_campaign_ray, 1 measuring slot and 1 builder preparing ahead on the other core

    python -m benchmarks.ray_scaling --backend onnxruntime --count 60 --modes local,ray1,ray2,ray1b1
    python -m benchmarks.ray_scaling --backend torch-compile --count 4 --modes ray1,ray1b1

Throughput is samples per hour over the campaign's wall time (Ray's start-up included) and in steady state (first
to last row); Ray's own cost per architecture is the round trip of a row-sized job to an actor and back (measured
after the campaigns), and ray1's steady-state time per row less local's. A torch-compile run needs a fresh Inductor
cache per mode (TORCHINDUCTOR_CACHE_DIR), or a later mode finds the earlier mode's compilations.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from latkit.backends.timing import MeasureProtocol
from latkit.backends.registry import get_backend
from latkit.cluster import Spec, connect, run_campaign_ray
from latkit.datasets.quality import noise_floor
from latkit.datasets.store import load
from latkit.campaign import run_campaign
from latkit.network import NetConfig

MODES = {"local": (0, 0), "ray1": (1, 0), "ray2": (2, 0), "ray1b1": (1, 1)}  # (workers, builders); local: none


def steady_s_per_row(path: Path) -> float:
    """Seconds per row between the first and the last row written."""
    stamps = sorted(dt.datetime.fromisoformat(s) for s in load(path).table.column("timestamp").to_pylist())
    return (stamps[-1] - stamps[0]).total_seconds() / max(len(stamps) - 1, 1)


def run_mode(mode: str, backend: str, count: int, out: Path) -> dict[str, Any]:
    spec = Spec(backend, "cpu", {}, NetConfig(), MeasureProtocol(duet=False), 0)  # its RESULTS figures are solo
    kwargs = dict(count=count, out=str(out), reference_every=0, repeat_every=5)
    start = time.perf_counter()
    if mode == "local":
        cpus = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {0})
        try:
            result = run_campaign(get_backend(backend, "cpu"), spec.config, spec.protocol, seed=0, **kwargs)
        finally:
            os.sched_setaffinity(0, cpus)
    else:
        workers, builders = MODES[mode]
        result = run_campaign_ray(spec, workers=workers, builders=builders, **kwargs)
    wall = time.perf_counter() - start
    ds = load(out)
    ok = ds.samples()
    stages = {c: float(np.median(ok.column(c).to_numpy())) for c in ("build_ms", "prepare_ms", "warmup_ms",
                                                                    "timing_ms")}
    nf = noise_floor(ds, "min_ms")
    return {"mode": mode, "samples": result.measured, "rows": ds.table.num_rows, "wall_s": wall,
            "samples_per_hour": result.measured / wall * 3600, "steady_s_per_row": steady_s_per_row(out),
            "single_noise_pct": nf.get("single_mape_pct"), "noise_pairs": nf.get("pairs"),
            "median_min_ms": float(np.median(ok.column("min_ms").to_numpy())), "median_stage_ms": stages}


def round_trip_ms(calls: int = 200) -> float:
    """Median time for the driver to hand an actor a job and get its (row-sized) result back: Ray's cost per row."""
    import ray

    @ray.remote(num_cpus=0)
    class Echo:
        def job(self, kind: str, index: int, source: Any = None) -> dict[str, Any]:
            return {"kind": kind, "index": index, "genotype": "x" * 600, **{f"c{i}": float(i) for i in range(20)}}

    echo = Echo.remote()
    ray.get(echo.job.remote("sample", 0))
    times = []
    for i in range(calls):
        t = time.perf_counter()
        ray.get(echo.job.remote("sample", i))
        times.append((time.perf_counter() - t) * 1e3)
    ray.kill(echo)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--count", type=int, default=60)
    ap.add_argument("--modes", default="local,ray1,ray2,ray1b1")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()
    modes = args.modes.split(",")
    if any(m != "local" for m in modes):
        connect("local", num_cpus=2)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in modes:
            rows.append(run_mode(mode, args.backend, args.count, Path(tmp) / f"{mode}.parquet"))
            r = rows[-1]
            print(f"{mode:7s} {r['samples']:4d} samples in {r['wall_s']:7.1f} s: {r['samples_per_hour']:7.0f}/h "
                  f"(steady {3600 / r['steady_s_per_row']:7.0f} rows/h), single noise {r['single_noise_pct']:.2f}% "
                  f"({r['noise_pairs']} pairs), median min_ms {r['median_min_ms']:.3f}, stages {r['median_stage_ms']}",
                  flush=True)
    by = {r["mode"]: r for r in rows}
    trip = round_trip_ms() if any(m != "local" for m in modes) else None
    if trip is not None:
        print(f"Ray round trip per job (driver -> actor -> driver, a row-sized result): median {trip:.2f} ms")
    if "local" in by and "ray1" in by:
        print(f"Ray overhead per row (ray1 - local, steady state): "
              f"{(by['ray1']['steady_s_per_row'] - by['local']['steady_s_per_row']) * 1e3:.0f} ms")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"backend": args.backend, "count": args.count, "date": str(dt.date.today()),
                                              "cpu_count": os.cpu_count(), "round_trip_ms": trip, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
