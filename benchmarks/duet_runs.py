"""Does a longer timed loop quiet the duet at batch 8? DARTS_V2 timed beside itself, in windows of 30, 60 and 120
runs, interleaved.

Usage: python -m benchmarks.duet_runs [--core 0] [--batch 8] [--repeats 30,60,120] [--windows 10] [--fresh] [--json F]

Both networks are the same, so the ratio of their minima in one window would be 1 with a perfect clock: its spread
over windows is the duet's own noise, what "DARTS_V2 beside itself" measures in a campaign (1.97% at batch 8 against
0.81% at batch 1, benchmarks/RESULTS.md). If a batch-8 run (about 120 ms) meets a time slice in most windows of 30,
the minimum of more runs finds an undisturbed one more often and the spread falls with the window's length. Window
lengths rotate within each round, so a slow spell of the host lands on every length alike. ``--fresh``: each window
is also timed with a newly built and prepared DARTS_V2 beside the same reference, as a campaign builds every sample
afresh (a new network or session may place its memory differently).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics

from latkit.backends.registry import get_backend
from latkit.backends.timing import MeasureProtocol, measure
from latkit.network import NetConfig, build
from latkit.space import PUBLISHED


def summarise(rows: list[dict[str, float]]) -> list[dict[str, float]]:
    """Per window length: the windows, the CV (%) of the ratio and of the raw minimum, and the median seconds a
    window took."""
    out = []
    for repeats, fresh in sorted({(int(r["repeats"]), bool(r.get("fresh"))) for r in rows}):
        mine = [r for r in rows if r["repeats"] == repeats and bool(r.get("fresh")) == fresh]
        ratio, raw = [r["ratio"] for r in mine], [r["min_ms"] for r in mine]
        out.append({"repeats": repeats, "fresh": fresh, "windows": len(mine),
                    "ratio_cv_pct": 100 * statistics.stdev(ratio) / statistics.fmean(ratio),
                    "raw_cv_pct": 100 * statistics.stdev(raw) / statistics.fmean(raw),
                    "window_s": statistics.median(r["window_s"] for r in mine)})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--core", type=int, default=0)
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", default="30,60,120")
    p.add_argument("--windows", type=int, default=10)
    p.add_argument("--fresh", action="store_true", help="also time a newly prepared DARTS_V2 in every window")
    p.add_argument("--json")
    args = p.parse_args()
    os.sched_setaffinity(0, {args.core})
    lengths = [int(r) for r in args.repeats.split(",")]
    backend = get_backend(args.backend)
    config = NetConfig(batch=args.batch)
    model = backend.prepare(build(PUBLISHED["DARTS_V2"], config))
    reference = backend.prepare(build(PUBLISHED["DARTS_V2"], config), beside=model)
    rows = []
    try:
        for w in range(args.windows):
            for repeats in lengths[w % len(lengths):] + lengths[:w % len(lengths)]:
                for fresh in (False, True) if args.fresh else (False,):
                    # afresh: a new network and runner, as a campaign builds every sample
                    runner = backend.prepare(build(PUBLISHED["DARTS_V2"], config), beside=reference) if fresh \
                        else model
                    try:
                        pair = measure(runner, MeasureProtocol(repeats=repeats), reference)
                    finally:
                        if fresh:
                            runner.close()
                    rows.append({"window": w, "repeats": repeats, "fresh": fresh, "min_ms": pair.stats.min_ms,
                                 "ratio": pair.stats.min_ms / pair.reference.min_ms,
                                 "window_s": pair.wall_ms / 1e3})
                    print(f"window {w} repeats {repeats}{' fresh' if fresh else ''}: ratio "
                          f"{rows[-1]['ratio']:.4f}, raw min {pair.stats.min_ms:.2f} ms", flush=True)
    finally:
        model.close()
        reference.close()
    summary = summarise(rows)
    print(f"\n{args.backend}, batch {args.batch}, DARTS_V2 beside itself, {args.windows} windows per length\n")
    print("| runs per window | DARTS_V2 | windows | CV of the ratio % | CV of the raw min % | seconds per window |\n"
          "|---|---|---|---|---|---|")
    for s in summary:
        print(f"| {s['repeats']} | {'prepared afresh' if s['fresh'] else 'one session'} | {s['windows']} | "
              f"{s['ratio_cv_pct']:.2f} | {s['raw_cv_pct']:.2f} | {s['window_s']:.1f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"backend": args.backend, "batch": args.batch, "rows": rows, "summary": summary}, f, indent=1)


if __name__ == "__main__":
    main()
