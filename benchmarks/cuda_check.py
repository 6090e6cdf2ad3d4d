"""Independent check of latkit's torch/cuda timing on a few architectures.

For each architecture (seed 0, indices 0..N-1, default network), three clocks side by side:
latkit's own loop (CUDA events on the runner's stream, default protocol), torch.utils.benchmark's Timer
(which synchronises the device around its blocks), and CUDA events recorded by hand around each call on the
default stream. The medians should agree to within a few percent; a gap means latkit's loop is wrong.

    python -m benchmarks.cuda_check --count 5 [--batch 1] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import statistics

import torch
from torch.utils import benchmark

from latkit.backends.timing import MeasureProtocol, measure
from latkit.backends.registry import get_backend
from latkit.network import NetConfig, build
from latkit.space import sample


def by_hand_ms(model: torch.nn.Module, x: torch.Tensor, runs: int = 100) -> float:
    """Median of ``runs`` calls, each bracketed by its own pair of CUDA events on the default stream."""
    times = []
    with torch.inference_mode():
        for _ in range(20):
            model(x)
        for _ in range(runs):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            model(x)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=5)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--json", help="write the rows here too")
    args = ap.parse_args()
    backend = get_backend("torch", "cuda")
    backend.check_available()
    rows = []
    print(f"{'arch':>5} {'latkit med':>11} {'latkit min':>11} {'benchmark':>10} {'events':>8} {'lk/bm':>6} {'lk/ev':>6}")
    for i in range(args.count):
        net = build(sample(0, i), NetConfig(batch=args.batch))
        runner = backend.prepare(net)
        ours = measure(runner, MeasureProtocol()).stats
        model, x = runner.model, runner.x
        torch.backends.cudnn.benchmark = True  # as latkit's runner has it while timing
        with torch.inference_mode():
            ref_ms = benchmark.Timer("m(x)", globals={"m": model, "x": x}).blocked_autorange(min_run_time=1).median * 1e3
        ev_ms = by_hand_ms(model, x)
        rows.append({"index": i, "latkit_median_ms": ours.median_ms, "latkit_min_ms": ours.min_ms,
                     "torch_benchmark_median_ms": ref_ms, "events_median_ms": ev_ms})
        print(f"{i:>5} {ours.median_ms:>11.3f} {ours.min_ms:>11.3f} {ref_ms:>10.3f} {ev_ms:>8.3f} "
              f"{ours.median_ms / ref_ms:>6.3f} {ours.median_ms / ev_ms:>6.3f}")
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, batch {args.batch}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "batch": args.batch,
                       "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
