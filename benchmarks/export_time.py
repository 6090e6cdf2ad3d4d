"""Export time per architecture: latkit's direct ONNX writer against torch.onnx.export, side by side.

Usage: python -m benchmarks.export_time [--count 60] [--reference 5] [--threads 1]
Prints a Markdown table of medians (ms) for network build, graph writing, serialisation and their total.
"""
from __future__ import annotations

import argparse
import io
import platform
import statistics
import time

import warnings

import torch

from latkit.network import NetConfig, build
from latkit.onnx_export import to_onnx
from latkit.space import sample


def _ms(t0: int) -> float:
    return (time.perf_counter_ns() - t0) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=60, help="sampled genotypes for latkit's writer")
    parser.add_argument("--reference", type=int, default=5, help="of those, how many also go through torch.onnx")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # torch.onnx.export(dynamo=False)
    config = NetConfig()
    rows: dict[str, list[float]] = {"build": [], "write graph": [], "serialise": [], "total": [], "torch.onnx": []}
    for index in range(args.count):
        genotype = sample(0, index)
        t0 = time.perf_counter_ns()
        model = build(genotype, config)
        t_build = _ms(t0)
        t1 = time.perf_counter_ns()
        proto = to_onnx(model)
        t_write = _ms(t1)
        t2 = time.perf_counter_ns()
        proto.SerializeToString()
        t_ser = _ms(t2)
        for key, value in zip(rows, (t_build, t_write, t_ser, _ms(t0))):
            rows[key].append(value)
        if index < args.reference:
            t3 = time.perf_counter_ns()
            torch.onnx.export(model, (torch.zeros(config.input_shape()),), io.BytesIO(), dynamo=False)
            rows["torch.onnx"].append(_ms(t3) + t_build)
    print(f"{args.count} sampled genotypes (seed 0), default config {config.to_dict()}, torch threads "
          f"{args.threads}, {platform.processor() or platform.machine()}, torch {torch.__version__}\n")
    print("| step | median ms | min ms | max ms | n |\n|---|---|---|---|---|")
    for key, values in rows.items():
        if values:
            print(f"| {key} | {statistics.median(values):.1f} | {min(values):.1f} | {max(values):.1f} | "
                  f"{len(values)} |")
    if rows["torch.onnx"]:
        same = rows["total"][: len(rows["torch.onnx"])]
        print(f"\nspeed-up over build + torch.onnx.export on the same {len(same)} genotypes (ratio of medians): "
              f"{statistics.median(rows['torch.onnx']) / statistics.median(same):.1f}x")


if __name__ == "__main__":
    main()
