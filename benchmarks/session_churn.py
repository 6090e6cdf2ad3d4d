"""Does the drift over a run follow the process's age or the sessions it has made? DARTS_V2 beside itself, with
throwaway sessions between timings.

Usage: python -m benchmarks.session_churn [--backend openvino] [--core 0] [--minutes 8] [--churn 1] [--sleep 0]
       [--json F]

One process, as a campaign: the reference (DARTS_V2) is prepared once at the start. Then, until ``--minutes`` have
passed, each step prepares a fresh DARTS_V2 beside it and times the pair (the campaign's protocol), closes it, and
prepares and closes ``--churn`` sessions of sampled architectures without timing them (campaign seed 99, none of
them in the shipped datasets), then sleeps ``--sleep`` seconds. A campaign makes about 30 sessions a minute; run
this once with many throwaway sessions per step and once with none and a sleep: if the fresh DARTS_V2's ratio to the
reference rises with the sessions made, the first arm reaches its plateau within a minute and the second not for
many; if it rises with the process's age, both follow one curve in minutes.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from typing import Any

from latkit.backends.registry import get_backend
from latkit.backends.timing import MeasureProtocol, measure
from latkit.errors import LatkitError
from latkit.network import NetConfig, build
from latkit.space import PUBLISHED, sample

CHURN_SEED = 99


def run(backend_name: str, minutes: float, churn: int, sleep_s: float = 0.0) -> list[dict[str, Any]]:
    """One row per step: minutes since the reference was prepared, sessions made so far, the ratio of the minima."""
    backend = get_backend(backend_name)
    if not backend.persistent_runners:
        raise LatkitError(f"{backend_name}: preparing a model invalidates the reference here; this check needs a "
                          "backend whose runners persist")
    config = NetConfig()
    reference = backend.prepare(build(PUBLISHED["DARTS_V2"], config))
    start, sessions, made, rows = time.perf_counter(), 0, 0, []
    try:
        while time.perf_counter() - start < 60 * minutes:
            runner = backend.prepare(build(PUBLISHED["DARTS_V2"], config), beside=reference)
            try:
                pair = measure(runner, MeasureProtocol(), reference)
            finally:
                runner.close()
            sessions += 1
            rows.append({"minute": (time.perf_counter() - start) / 60, "sessions": sessions,
                         "ratio": pair.stats.min_ms / pair.reference.min_ms, "min_ms": pair.stats.min_ms,
                         "ref_min_ms": pair.reference.min_ms})
            for _ in range(churn):
                backend.prepare(build(sample(CHURN_SEED, made), config), beside=reference).close()
                made += 1
                sessions += 1
            time.sleep(sleep_s)
    finally:
        reference.close()
    return rows


def summary(rows: list[dict[str, Any]], key: str, edges: list[float]) -> list[tuple[float, float, int]]:
    """(lower edge, median ratio, timings) per bin of ``key``."""
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        mine = [r["ratio"] for r in rows if lo <= r[key] < hi]
        if mine:
            out.append((lo, statistics.median(mine), len(mine)))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="openvino")
    p.add_argument("--core", type=int, default=0)
    p.add_argument("--minutes", type=float, default=8.0)
    p.add_argument("--churn", type=int, default=1, help="throwaway sessions of sampled architectures per step")
    p.add_argument("--sleep", type=float, default=0.0, help="seconds to sleep after each step")
    p.add_argument("--json")
    args = p.parse_args()
    if args.minutes <= 0 or args.churn < 0 or args.sleep < 0:
        p.error("--minutes must be positive, --churn and --sleep not negative")
    if args.core not in os.sched_getaffinity(0):
        p.error(f"--core {args.core}: not one of this process's CPUs {sorted(os.sched_getaffinity(0))}")
    os.sched_setaffinity(0, {args.core})
    try:
        rows = run(args.backend, args.minutes, args.churn, args.sleep)
    except LatkitError as e:
        raise SystemExit(str(e)) from None
    last = statistics.median(r["ratio"] for r in rows[-max(1, len(rows) // 4):])
    print(f"{args.backend}, churn {args.churn}, sleep {args.sleep:g} s: {len(rows)} timings, {rows[-1]['sessions']} sessions in "
          f"{rows[-1]['minute']:.1f} min; median ratio relative to the last quarter's ({last:.4f}):")
    for key, edges in (("minute", [0, 1, 2, 3, 4, 6, 8, 10, 15, math.inf]),
                       ("sessions", [0, 25, 50, 100, 200, 400, 800, 1600, math.inf])):
        print(f"  by {key}: " + ", ".join(f"{lo:g}+: {100 * (m / last - 1):+.2f}% ({n})"
                                          for lo, m, n in summary(rows, key, edges)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"backend": args.backend, "churn": args.churn, "sleep_s": args.sleep, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
