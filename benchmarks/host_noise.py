"""Is the host itself noisy? Time DARTS_V2 on onnxruntime at the supernet size, repeatedly, on one core.

Usage: python -m benchmarks.host_noise [--core 1] [--rounds 12]

Three series of ``rounds`` minima of 30 runs each (after 5 warm-up runs): one ORT session, a new session per round,
then the first session again. Run it with nothing else of yours on the machine: minima that move by tens of percent
within seconds, in one session, come from outside the process (other tenants of the host).
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--core", type=int, default=1)
    p.add_argument("--rounds", type=int, default=12)
    args = p.parse_args()
    os.sched_setaffinity(0, {args.core})
    import onnxruntime as ort

    from latkit.backends.base import ModelSource
    from latkit.network import NetConfig, build
    from latkit.space import parse

    src = ModelSource.of(build(parse("DARTS_V2"), NetConfig(layers=8, channels=16)))
    onnx = src.onnx()
    x = np.random.default_rng(0).standard_normal(src.input_shape, np.float32)

    def session() -> "ort.InferenceSession":
        o = ort.SessionOptions()
        o.intra_op_num_threads = o.inter_op_num_threads = 1
        return ort.InferenceSession(onnx, o, providers=["CPUExecutionProvider"])

    def min_ms(s: "ort.InferenceSession") -> float:
        name = s.get_inputs()[0].name
        for _ in range(5):
            s.run(None, {name: x})
        times = []
        for _ in range(30):
            t0 = time.perf_counter()
            s.run(None, {name: x})
            times.append(time.perf_counter() - t0)
        return round(1e3 * min(times), 3)

    first = session()
    print("one session ", [min_ms(first) for _ in range(args.rounds)])
    print("new sessions", [min_ms(session()) for _ in range(args.rounds)])
    print("one session ", [min_ms(first) for _ in range(args.rounds)])


if __name__ == "__main__":
    main()
