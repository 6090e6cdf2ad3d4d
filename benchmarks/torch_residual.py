"""Where does eager torch's error beyond the op costs come from? Measure the architectures it misses most again.

Usage: python -m benchmarks.torch_residual --fit datasets/torch_cpu_b1_r32_c36_l20.parquet --other OLD.parquet
       [--other ...] --per-side 20 --arms default,malloc --rounds 2 --core 0 --out benchmarks/torch_residual

Each file's residual is log(latency / prediction) in %, out of fold (10 folds by sample index), from latkit's
``cse`` predictor (the op groups and the merged ops) fitted on the file's undisturbed rows; only undisturbed rows
get a residual. The architectures whose residual has one sign in every file are ranked by the residual nearest zero
among the files (so one disturbed or noisy measurement cannot put an architecture on a side); the ``--per-side``
most positive and most negative are measured again, each arm and round in a process of its own (arms alternate; the
two sides interleaved), with the ``--fit`` file's backend, network, protocol and seed:
- ``default``: as the campaigns measure;
- ``malloc``: glibc's malloc told never to hand memory back or to map large blocks afresh (GLIBC_TUNABLES
  mmap_threshold 32 MiB, trim_threshold 4 GiB), so page faults from the allocator's choices vanish.
The gap is the positive side's mean residual minus the negative side's, against the ``--fit`` prediction: an arm
that removes the cause collapses it; ``default`` says how much of it a fresh process reproduces. Both arms run the
same kernels, so their gaps compare like for like.
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from latkit.datasets.store import load
from latkit.errors import LatkitError
from latkit.predictors.fitting import dataset_xy, out_of_fold_ms

FOLDS = 10
ARMS = {"default": {}, "malloc": {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=33554432:"
                                                     "glibc.malloc.trim_threshold=4294967296"}}
SAME = ("backend", "device", "config", "seed")  # what every file must share for its indices to name one network


def residuals(path: str) -> tuple[dict[int, float], dict[int, float]]:
    """Per undisturbed sample index: the out-of-fold residual (%) and prediction (ms) of the cse predictor."""
    x, y, index, clean = dataset_xy(load(path))
    pred = out_of_fold_ms("cse", {}, x, y, index % FOLDS, fit_rows=clean)
    r = 100 * np.log(y / pred)
    return dict(zip(index[clean].tolist(), r[clean].tolist())), dict(zip(index.tolist(), pred.tolist()))


def choose(files: list[dict[int, float]], per_side: int) -> tuple[list[int], list[int], dict[int, float]]:
    """(positive side, negative side, residual nearest zero per index) over the indices in every file whose residual
    has one sign in all of them; one-line error if either side has fewer than ``per_side``."""
    if per_side < 1:
        raise LatkitError(f"--per-side must be >= 1, got {per_side}")
    common = set.intersection(*(set(f) for f in files))
    nearest = {i: min((f[i] for f in files), key=abs) for i in common
               if all(f[i] > 0 for f in files) or all(f[i] < 0 for f in files)}
    pos = sorted((i for i in nearest if nearest[i] > 0), key=lambda i: -nearest[i])
    neg = sorted((i for i in nearest if nearest[i] < 0), key=lambda i: nearest[i])
    if min(len(pos), len(neg)) < per_side:
        raise LatkitError(f"only {len(pos)} positive and {len(neg)} negative architectures agree in sign in every "
                          f"file; ask for fewer than {per_side} per side")
    return sorted(pos[:per_side]), sorted(neg[:per_side]), nearest


def measure(fit: str, arm: str, indices: list[int], core: int, out: Path) -> None:
    """Measure ``indices`` in this process, as the ``fit`` file was measured, into ``out`` (resumes a partial
    file; measures nothing when it is complete)."""
    from latkit.backends.registry import get_backend
    from latkit.backends.timing import MeasureProtocol
    from latkit.campaign import run_campaign
    from latkit.network import NetConfig

    h = load(fit).header
    protocol = MeasureProtocol(**h["protocol"])
    backend = get_backend(h["backend"], h["device"], protocol.threads,
                          [f"{k}={v}" for k, v in h.get("backend_options", {}).items()])
    run_campaign(backend, NetConfig(**h["config"]), protocol, seed=h["seed"], count=max(indices) + 1,
                 indices=indices, out=out, pin_cpu=core, repeat_every=0, reference_every=0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fit", required=True)
    p.add_argument("--other", action="append", default=[])
    p.add_argument("--per-side", type=int, default=20)
    p.add_argument("--arms", default="default,malloc")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--core", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("benchmarks/torch_residual"))
    p.add_argument("--measure-arm", help=argparse.SUPPRESS)  # internal: one arm's process
    p.add_argument("--indices", help=argparse.SUPPRESS)
    args = p.parse_args()
    try:
        if args.measure_arm:
            measure(args.fit, args.measure_arm, [int(i) for i in args.indices.split(",")], args.core, args.out)
            return
        print(report(args))
    except (LatkitError, subprocess.CalledProcessError) as e:
        raise SystemExit(f"torch_residual: {e}") from None
    except KeyboardInterrupt:
        raise SystemExit("torch_residual: interrupted; every finished architecture is in its arm's file, run the same "
                         "command to resume") from None


def report(args: argparse.Namespace) -> str:
    """Choose, measure every arm and round (resuming), and the Markdown table of their gaps (also written to
    ``--out``/gaps.md)."""
    arms = args.arms.split(",")
    if not arms or not set(arms) <= set(ARMS):
        raise LatkitError(f"unknown arm in {args.arms!r} (known: {', '.join(ARMS)})")
    head = load(args.fit).header
    for other in args.other:
        h = load(other).header
        if any(h[k] != head[k] for k in SAME):
            raise LatkitError(f"{other} differs from {args.fit} in {', '.join(k for k in SAME if h[k] != head[k])}")
    fit_r, fit_pred = residuals(args.fit)
    files = [fit_r] + [residuals(o)[0] for o in args.other]
    names = [Path(args.fit).name] + [Path(o).name for o in args.other]
    shared = []
    for a in range(len(files)):
        for b in range(a + 1, len(files)):
            common = sorted(set(files[a]) & set(files[b]))
            ra, rb = (np.array([f[i] for i in common]) for f in (files[a], files[b]))
            shared.append(f"{names[a]} and {names[b]}: correlation {np.corrcoef(ra, rb)[0, 1]:.2f}, shared standard "
                          f"deviation {math.sqrt(max(np.cov(ra, rb)[0, 1], 0.0)):.2f}% over {len(common)}")
    pos, neg, nearest = choose(files, args.per_side)
    order = [i for pair in zip(pos, neg) for i in pair]
    args.out.mkdir(parents=True, exist_ok=True)
    mean = {s: np.mean([nearest[i] for i in side]) for s, side in (("pos", pos), ("neg", neg))}
    lines = ["Out-of-fold residuals of the files, pairwise (the shared standard deviation is the square root of their "
             "covariance: what the files' residuals have in common):", *[f"- {line}" for line in shared], "",
             f"{len(pos)} + {len(neg)} architectures whose residual has one sign in all {len(files)} files; their "
             f"residual nearest zero: positive side {mean['pos']:+.2f}%, negative side {mean['neg']:+.2f}%, gap "
             f"{mean['pos'] - mean['neg']:.2f} points", "",
             "| arm | round | gap, points (se) | positive side | negative side | corr with the residual nearest zero: "
             "all / within the positive side / within the negative side |", "|---|---|---|---|---|---|"]
    for k in range(1, args.rounds + 1):
        for arm in arms:
            path = args.out / f"{arm}_round{k}.parquet"
            print(f"round {k}, arm {arm}", file=sys.stderr, flush=True)
            subprocess.run([sys.executable, __file__, "--fit", args.fit, "--measure-arm", arm, "--indices",
                            ",".join(map(str, order)), "--core", str(args.core), "--out", str(path)],
                           check=True, env={**os.environ, **ARMS[arm]})
            x, y, index, clean = dataset_xy(load(path))
            if set(index[clean].tolist()) != set(order):
                raise LatkitError(f"{path} does not hold every chosen architecture undisturbed (another --per-side "
                                  "or --other, or disturbed rows): delete it and run again")
            r = {i: 100 * math.log(v / fit_pred[i]) for i, v in zip(index.tolist(), y.tolist())}
            a, b = np.array([r[i] for i in pos]), np.array([r[i] for i in neg])
            se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
            corr = [np.corrcoef([r[i] for i in side], [nearest[i] for i in side])[0, 1] for side in (order, pos, neg)]
            lines.append(f"| {arm} | {k} | {a.mean() - b.mean():.2f} ({se:.2f}) | {a.mean():+.2f} | {b.mean():+.2f} | "
                         + " / ".join(f"{c:.2f}" for c in corr) + " |")
    text = "\n".join(lines)
    (args.out / "gaps.md").write_text(text + "\n", encoding="utf-8")
    return text


if __name__ == "__main__":
    main()
