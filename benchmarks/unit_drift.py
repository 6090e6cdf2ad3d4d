"""Why a dataset's normalised latency moves between days and processes, and what holds it.

Usage: python -m benchmarks.unit_drift --dataset F [--processes 4] [--passes 2] [--long-passes 8] [--core 1]
                                       [--out benchmarks/unit_drift]
       python -m benchmarks.unit_drift --dataset F --calibrate [--processes 3] [--core 1] [--out DIR]
       python -m benchmarks.unit_drift --analyse benchmarks/unit_drift/NAME.jsonl [--calibrate]

The set: the file's first 12 samples, the next 8 (anchors), its 2 fastest and 2 slowest (by ratio to DARTS_V2), and
DARTS_V2 itself, each
built afresh and timed by latkit's own path (the file's configuration, backend options and protocol, beside the
reference prepared once per process, as a campaign does). ``--processes`` fresh processes each time the set
``--passes`` times (shuffled per pass); then one long process times it ``--long-passes`` times. Each cause predicts a
different pattern of the deviation of a row's ratio from the file's ratio of the same architecture:
- the process (its age, allocator, thread pools): passes of one process differ (first against later), and fresh
  processes differ from each other by more than passes within one;
- the host state on the day (cache and bandwidth share): every process and pass shifts alike;
- the reference as yardstick: the deviation depends on the architecture's size (slope against log ratio), so a
  second yardstick (the file's own architectures re-timed: anchors) corrects what one reference cannot.
The analysis prints each process's mean deviation of the first 12, the pass-to-pass and process-to-process spread,
the size slope, and what a per-run anchor correction leaves (the first 12 scored after scaling each pass by its
anchors' median deviation). ``--calibrate``: each process calibrates the file's embedded recommended predictor
(``latkit.calibrate``) by the anchors and by DARTS_V2 alone, then times 12 held-out architectures right after, and the
table gives each calibration's bias and MAPE against what was measured.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from latkit.backends.registry import get_backend
from latkit.backends.timing import MeasureProtocol
from latkit.datasets.store import load
from latkit.measure import REFERENCE, Reference, reference_source, time_genotype
from latkit.network import NetConfig
from latkit.space import PUBLISHED, parse

FIRST = 12
ANCHORS = 8  # the file's samples 12..19: architectures of typical size, re-timed in every pass


def the_set(path: str) -> list[dict]:
    """The architectures timed: the file's first 12 samples, the next 8 (anchors), its 2 fastest and 2 slowest,
    DARTS_V2 (its file ratio: the median of its reference rows, DARTS_V2 beside itself)."""
    ds = load(path)
    s = ds.samples()
    ratio = np.asarray(s.column("min_ms").to_pylist()) / np.asarray(s.column("ref_min_ms").to_pylist())
    index = s.column("index").to_pylist()
    geno = s.column("genotype").to_pylist()
    by_index = {i: k for k, i in enumerate(index)}
    order = np.argsort(ratio)
    chosen = [("first", by_index[i]) for i in range(FIRST)]
    chosen += [("anchor", by_index[i]) for i in range(FIRST, FIRST + ANCHORS)]
    chosen += [("fast", int(k)) for k in order[:2]] + [("slow", int(k)) for k in order[-2:]]
    out = [{"role": role, "index": int(index[k]), "genotype": geno[k], "file_ratio": float(ratio[k])}
           for role, k in chosen]
    kind = np.asarray(ds.column("kind"))
    ok = np.asarray(ds.column("status")) == "ok"
    ref_rows = (kind == "reference") & ok
    darts = np.asarray(ds.column("min_ms"))[ref_rows] / np.asarray(ds.column("ref_min_ms"))[ref_rows]
    out.append({"role": "darts", "index": -1, "genotype": str(PUBLISHED[REFERENCE]),
                "file_ratio": float(np.median(darts))})
    return out


def child(dataset: str, passes: int, arm: str, out: Path) -> None:
    """One process: time the set ``passes`` times, appending a JSON line per timing to ``out``."""
    ds = load(dataset)
    h = ds.header
    protocol = MeasureProtocol(**h["protocol"])
    config = NetConfig(**h["config"])
    backend = get_backend(h["backend"], h["device"], protocol.threads,
                          {k: str(v) for k, v in (h.get("backend_options") or {}).items()})
    backend.check_available()
    ref = Reference(backend, reference_source(config))
    ref.check(protocol)
    items = the_set(dataset)
    t0 = time.perf_counter()
    pid = os.getpid()
    with out.open("a") as f:
        for p in range(passes):
            order = list(range(len(items)))
            random.Random(pid * 100 + p).shuffle(order)
            for k in order:
                it = items[k]
                row = time_genotype(backend, parse(it["genotype"]), config, protocol, it["role"], ref)
                if row["status"] != "ok":
                    continue
                f.write(json.dumps({"arm": arm, "pid": pid, "pass": p, "age_s": time.perf_counter() - t0,
                                    "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **it,
                                    "min_ms": row["min_ms"], "ref_min_ms": row["ref_min_ms"],
                                    "ratio": row["ratio"], "cpu_share": row["timing_cpu_ms"] / row["timing_ms"]}) + "\n")
                f.flush()
    ref.close()


def calibration_child(dataset: str, out: Path) -> None:
    """One process: ``latkit.calibrate`` the dataset's embedded recommended predictor by its anchors and by DARTS_V2
    alone (a copy without anchors), then time 12 held-out architectures that are not anchors right after; one JSON
    line per architecture with both calibrated predictions and the measured raw latency."""
    import copy

    from latkit.api import calibrate
    from latkit.predictors import load_predictor
    from latkit.predictors.fitting import holdout
    from latkit.space import encode

    ds = load(dataset)
    h = ds.header
    predictor = load_predictor(h["backend"], device=h["device"])
    by_reference = copy.copy(predictor)
    by_reference.meta = {k: v for k, v in predictor.meta.items() if k != "anchors"}
    t0 = time.perf_counter()
    anchored, alone = calibrate(predictor), calibrate(by_reference)
    cal_s = time.perf_counter() - t0
    s = ds.samples()
    index = np.asarray(s.column("index").to_pylist())
    unseen = [k for k in np.argsort(index) if holdout(index[k:k + 1])[0] and int(index[k]) not in ds.anchors()][:12]
    protocol = MeasureProtocol(**h["protocol"])
    config = NetConfig(**h["config"])
    backend = get_backend(h["backend"], h["device"], protocol.threads,
                          {k: str(v) for k, v in (h.get("backend_options") or {}).items()})
    ref = Reference(backend, reference_source(config))
    with out.open("a") as f:
        for k in unseen:
            g = parse(s.column("genotype")[int(k)].as_py())
            predicted = float(predictor.predict_ms(encode(g)[None])[0])
            row = time_genotype(backend, g, config, protocol, "unseen", ref)
            f.write(json.dumps({"arm": "calibrate", "pid": os.getpid(), "index": int(index[k]), "kind": predictor.kind,
                                "predicted_ms": predicted, "scale_anchors": anchored["scale"],
                                "scale_reference": alone["scale"], "calibration_s": cal_s,
                                "min_ms": row["min_ms"], "ref_min_ms": row["ref_min_ms"],
                                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n")
    ref.close()


def analyse_calibration(path: Path) -> str:
    """Per process: MAPE and mean bias (%) of the calibrated predictions against the raw latencies measured right
    after, by the anchors and by DARTS_V2 alone."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    lines = ["| process | architectures | by anchors: scale, bias %, MAPE % | by DARTS_V2 alone: scale, bias %, MAPE % |",
             "|---|---|---|---|"]
    for pid in dict.fromkeys(r["pid"] for r in rows):
        pr = [r for r in rows if r["pid"] == pid]
        cells = []
        for key in ("scale_anchors", "scale_reference"):
            e = [100 * (r["predicted_ms"] * r[key] / r["min_ms"] - 1) for r in pr]
            cells.append(f"{pr[0][key]:.4f}, {statistics.fmean(e):+.2f}, {statistics.fmean(map(abs, e)):.2f}")
        lines.append(f"| {pid} | {len(pr)} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def analyse(path: Path) -> str:
    """The table of the module docstring, from a JSONL file of timings."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for r in rows:
        r["dev"] = 100 * (r["ratio"] / r["file_ratio"] - 1)
        r["raw_dev_ref"] = r["ref_min_ms"]
    procs: dict[tuple[str, int], list[dict]] = {}
    for r in rows:
        procs.setdefault((r["arm"], r["pid"]), []).append(r)
    lines = ["| process | pass | first-12 mean dev % | MAD % | slope % per e-fold of size | DARTS_V2 raw ms | "
             "anchor level % | first-12 after anchors: bias %, MAD % |", "|---|---|---|---|---|---|---|---|"]
    summary: dict[str, dict[str, list[float]]] = {}
    for (arm, pid), rs in procs.items():
        for p in sorted({r["pass"] for r in rs}):
            pr = [r for r in rs if r["pass"] == p]
            first = [r["dev"] for r in pr if r["role"] == "first"]
            if not first:
                continue
            x = np.log([r["file_ratio"] for r in pr])
            y = np.array([r["dev"] for r in pr])
            slope = float(np.polyfit(x, y, 1)[0]) if len(pr) > 2 else float("nan")
            anchors = [r for r in pr if r["role"] == "anchor"]
            level = statistics.median(r["ratio"] / r["file_ratio"] for r in anchors) if anchors else 1.0
            fixed = [100 * (r["ratio"] / level / r["file_ratio"] - 1) for r in pr if r["role"] == "first"]
            darts = [r["ref_min_ms"] for r in pr]
            b, m = statistics.fmean(first), statistics.fmean(abs(d) for d in first)
            bf, mf = statistics.fmean(fixed), statistics.fmean(abs(d) for d in fixed)
            arm_summary = summary.setdefault("fresh processes, first pass" if arm == "fresh" and p == 0 else
                                             f"{arm}, later passes" if p else f"{arm}, first pass", {})
            for k, v in zip(("bias", "MAD", "bias with anchors", "MAD with anchors", "size slope"),
                            (b, m, bf, mf, slope)):
                arm_summary.setdefault(k, []).append(v)
                summary.setdefault("all passes", {}).setdefault(k, []).append(v)
            lines.append(f"| {arm} {pid} | {p} | {b:+.2f} | {m:.2f} | {slope:+.2f} | {statistics.median(darts):.3f} "
                         f"| {100 * (level - 1):+.2f} | {bf:+.2f}, {mf:.2f} |")
    lines.append("")
    for arm, figures in summary.items():
        lines.append(f"- {arm} ({len(figures['bias'])}): " + "; ".join(
            f"{k} {statistics.fmean(v):+.2f} (sd {statistics.pstdev(v):.2f})" for k, v in figures.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset")
    ap.add_argument("--processes", type=int, default=4)
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--long-passes", type=int, default=8)
    ap.add_argument("--core", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/unit_drift")
    ap.add_argument("--analyse")
    ap.add_argument("--calibrate", action="store_true",
                    help="each process calibrates the embedded predictor, then times 12 unseen architectures")
    ap.add_argument("--child", nargs=2, metavar=("ARM", "PASSES"))
    a = ap.parse_args(argv)
    if a.analyse:
        print((analyse_calibration if a.calibrate else analyse)(Path(a.analyse)))
        return
    out = Path(a.out) / (Path(a.dataset).stem + ("_calibrate" if a.calibrate else "") + ".jsonl")
    if a.child:
        (calibration_child(a.dataset, out) if a.calibrate else child(a.dataset, int(a.child[1]), a.child[0], out))
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    runs = [("fresh", a.passes)] * a.processes + ([("long", a.long_passes)] if a.long_passes and not a.calibrate
                                                  else [])
    for arm, passes in runs:
        cmd = ["taskset", "-c", str(a.core), sys.executable, "-m", "benchmarks.unit_drift", "--dataset", a.dataset,
               "--out", a.out, "--child", arm, str(passes)] + (["--calibrate"] if a.calibrate else [])
        print(time.strftime("%H:%M:%S"), " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    print((analyse_calibration if a.calibrate else analyse)(out))


if __name__ == "__main__":
    main()
