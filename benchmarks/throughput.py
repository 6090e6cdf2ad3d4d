"""Measurement throughput: architectures per hour per backend and where the time goes.

Usage: python -m benchmarks.throughput [DATASET ...] [--split 20]
Reads the campaign's own per-row stage timings (build, prepare, warm-up, timed loop) from each dataset, and the
campaign's wall-clock rate from its timestamps (each run, from its first row to its last: the pauses between
resumed runs are excluded).
``--split N`` also times N architectures to split onnxruntime's prepare into ONNX export and session creation.
"""
from __future__ import annotations

import argparse
import datetime as dt
import time

import numpy as np

from latkit.datasets import shipped
from latkit.datasets.store import load


def campaign_rate_per_hour(timestamps: list[str], run_ids: list[str]) -> tuple[float, float]:
    """(rows per hour of active measuring, active hours): each run (a start or a resume: its own run_id) counts
    from its first to its last row, so the pauses between runs are not counted, however long a row takes."""
    runs: dict[str, list[float]] = {}
    for stamp, run in zip(timestamps, run_ids):
        runs.setdefault(run, []).append(dt.datetime.fromisoformat(stamp).timestamp())
    active_s = sum(max(t) - min(t) for t in runs.values())
    rows = sum(len(t) - 1 for t in runs.values())  # rows measured after each run's first
    return rows / active_s * 3600, active_s / 3600


def split_prepare(count: int) -> dict[str, float]:
    """Median ms of ONNX export and of ORT session creation, separately, on ``count`` sampled architectures."""
    import onnxruntime as ort

    from latkit.network import build
    from latkit.onnx_export import to_onnx
    from latkit.space import sample

    export_ms, session_ms = [], []
    for i in range(count):
        model = build(sample(99, i))
        t0 = time.perf_counter_ns()
        blob = to_onnx(model).SerializeToString()
        t1 = time.perf_counter_ns()
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])
        t2 = time.perf_counter_ns()
        export_ms.append((t1 - t0) / 1e6)
        session_ms.append((t2 - t1) / 1e6)
    return {"export_ms": float(np.median(export_ms)), "session_ms": float(np.median(session_ms))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*")
    parser.add_argument("--split", type=int, default=0)
    args = parser.parse_args()
    print("| dataset | rows | active h | rows/h (all kinds) | samples/h | build ms | prepare ms | warm-up ms | "
          "timed loop ms | loop CPU/wall |\n|---|---|---|---|---|---|---|---|---|---|")
    for path in args.datasets or shipped():
        ds = load(path)
        t = ds.table
        ok = ds.samples()
        rate, hours = campaign_rate_per_hour(t.column("timestamp").to_pylist(), t.column("run_id").to_pylist())
        share = ok.num_rows / t.num_rows
        med = {c: float(np.median(ok.column(c).to_numpy())) for c in ("build_ms", "prepare_ms", "warmup_ms",
                                                                     "timing_ms")}
        ratio = ok.column("timing_cpu_ms").to_numpy() / ok.column("timing_ms").to_numpy()
        print(f"| {ds.path.name} | {t.num_rows} | {hours:.2f} | {rate:.0f} | {rate * share:.0f} | "
              f"{med['build_ms']:.0f} | {med['prepare_ms']:.0f} | {med['warmup_ms']:.0f} | {med['timing_ms']:.0f} | "
              f"median {np.median(ratio):.3f}, p5 {np.percentile(ratio, 5):.3f} |")
    if args.split:
        print(f"\nonnxruntime prepare split over {args.split} architectures: {split_prepare(args.split)}")


if __name__ == "__main__":
    main()
