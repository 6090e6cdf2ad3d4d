"""Cost of the latency term per search step, measured side by side with the step itself.

Usage: python -m benchmarks.search_cost [--steps 10] [--target onnxruntime]
Times, on the default supernet (8 cells, 16 channels, batch 64, digits at 16x16), a first-order architecture step's
objective with lambda = 0 (cross-entropy only) and with the latency penalty, and the penalty alone
(softmax(alpha) -> encoding -> predictor -> backward).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from latkit.predictors import load_predictor
from latkit.search.data import load_data
from latkit.search.penalty import LatencyPenalty
from latkit.search.supernet import SuperNet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--target", default="onnxruntime")
    args = parser.parse_args()
    train, _, classes, in_channels = load_data("digits")
    x, y = train.tensors[0][:64], train.tensors[1][:64]
    model = SuperNet(classes=classes, in_channels=in_channels)
    penalty = LatencyPenalty(load_predictor(args.target), lam=0.1)

    def step(with_penalty: bool) -> float:
        t0 = time.perf_counter_ns()
        ce = F.cross_entropy(model(x), y)
        loss = penalty(ce, model.arch_weights())[0] if with_penalty else ce
        loss.backward()
        model.zero_grad(set_to_none=True)
        return (time.perf_counter_ns() - t0) / 1e6

    def penalty_only() -> float:
        t0 = time.perf_counter_ns()
        ms = penalty.latency_ms(model.arch_weights())
        ms.backward()
        model.zero_grad(set_to_none=True)
        return (time.perf_counter_ns() - t0) / 1e6

    step(False), step(True)  # warm-up
    plain, with_pen, alone = [], [], []
    for _ in range(args.steps):  # interleaved, so machine noise hits all three alike
        plain.append(step(False))
        with_pen.append(step(True))
        alone.append(penalty_only())
    p, w, a = (statistics.median(v) for v in (plain, with_pen, alone))
    print(f"torch threads {torch.get_num_threads()}, {args.steps} steps, predictor {args.target} mlp")
    print(f"| objective + backward | median ms |\n|---|---|\n| cross-entropy only | {p:.1f} |\n"
          f"| cross-entropy + latency penalty | {w:.1f} |\n| latency penalty alone | {a:.3f} |")
    print(f"\nlatency term: {100 * a / p:.2f}% of the step's objective+backward")


if __name__ == "__main__":
    main()
