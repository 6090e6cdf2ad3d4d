"""The duet protocol against the solo one: noise, shift under a neighbour, rank agreement, throughput.

Usage: python -m benchmarks.duet [--backends onnxruntime,openvino,torch] [--count 30] [--core 1]
                                  [--neighbour-core 0] [--variants solo:30,duet:30,duet:20] [--ray-builder]
                                  [--out benchmarks/duet]

For each backend, the first ``count`` architectures of campaign seed 0 at the default network are measured by
latkit's own campaign engine (``latkit.campaign.run_campaign``, pinned to ``--core``), twice (two passes) with each
protocol, quiet and then with a neighbour: a memory-bandwidth process on ``--neighbour-core`` that this script
starts and stops. Within a pass the protocols (``--variants``: protocol and timed runs) alternate, so they share
the host's state. Reported per backend, variant and condition:
- single-measurement noise: mean |pass 2 - pass 1| / pass 1 over the architectures, / sqrt 2 (as the datasheets);
- quiet-to-neighbour shift: mean of (neighbour / quiet - 1) of each architecture's mean over its passes;
- rank agreement: Spearman between each architecture's quiet and neighbour means;
- architectures per hour: measured architectures over the campaigns' own wall time.
The solo protocol's latency is the raw min_ms; the duet's is the ratio to the reference in the same window (the
normalised latency up to its dataset's baseline), with its raw min_ms beside it.
``--ray-builder``: then, quiet, the first solo and the first duet variant once more for two passes on one Ray slot
with one builder on the other core (``run_campaign_ray(..., workers=1, builders=1)``): the builder is the neighbour
there.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sstats

from latkit.backends.registry import get_backend
from latkit.backends.timing import MeasureProtocol
from latkit.campaign import run_campaign
from latkit.datasets.store import load
from latkit.network import NetConfig

HOG = """
import os, sys
import numpy as np
os.sched_setaffinity(0, {int(sys.argv[1])})
a = np.ones(1 << 25)  # 256 MiB, far beyond the L3: every copy streams through memory
b = np.empty_like(a)
while True:
    np.copyto(b, a)
    np.copyto(a, b)
"""


class Neighbour:
    """A memory-bandwidth process on ``core`` while the context is open."""

    def __init__(self, core: int | None):
        self.core, self.proc = core, None

    def __enter__(self) -> "Neighbour":
        if self.core is not None:
            self.proc = subprocess.Popen([sys.executable, "-c", HOG, str(self.core)])
            time.sleep(2.0)  # allocated and streaming
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()


def values(path: Path, duet: bool) -> tuple[dict[int, float], dict[int, float]]:
    """(latency, raw min_ms) per sample index: the latency is the duet's ratio, or the solo raw min_ms."""
    rows = [r for r in load(path).table.to_pylist() if r["kind"] == "sample" and r["status"] == "ok"]
    raw = {r["index"]: r["min_ms"] for r in rows}
    return ({r["index"]: r["ratio"] for r in rows} if duet else raw), raw


def noise_pct(a: dict[int, float], b: dict[int, float]) -> float:
    keys = sorted(a.keys() & b.keys())
    return float(100 * np.mean([abs(b[k] - a[k]) / a[k] for k in keys]) / math.sqrt(2))


def compare(passes: dict[str, list[dict[int, float]]]) -> dict[str, Any]:
    """Noise per condition, and the quiet-to-neighbour shift and rank agreement of the per-architecture means."""
    out: dict[str, Any] = {f"noise_{c}_pct": noise_pct(*p) for c, p in passes.items()}
    if {"quiet", "neighbour"} <= passes.keys():
        mean = {c: {k: float(np.mean([p[k] for p in ps])) for k in set.intersection(*(set(p) for p in ps))}
                for c, ps in passes.items()}
        keys = sorted(mean["quiet"].keys() & mean["neighbour"].keys())
        q, n = np.array([mean["quiet"][k] for k in keys]), np.array([mean["neighbour"][k] for k in keys])
        out.update(shift_pct=float(100 * np.mean(n / q - 1)), spread_pct=float(100 * np.std(n / q - 1)),
                   spearman=float(sstats.spearmanr(q, n).statistic), architectures=len(keys))
    return out


def parse_variants(text: str) -> dict[str, MeasureProtocol]:
    """``solo:30,duet:20`` as {name: protocol}: the default protocol with that duet setting and repeats."""
    out = {}
    for item in text.split(","):
        kind, _, repeats = item.partition(":")
        out[f"{kind}:{repeats}"] = MeasureProtocol(duet=kind == "duet", repeats=int(repeats))
    return out


def run_backend(name: str, count: int, core: int, neighbour_core: int, protocols: dict[str, MeasureProtocol],
                ray_builder: bool, workdir: Path) -> dict[str, Any]:
    os.sched_setaffinity(0, {core})
    config = NetConfig()
    ratio: dict[str, dict[str, list]] = {p: {} for p in protocols}
    raw: dict[str, dict[str, list]] = {p: {} for p in protocols}
    seconds: dict[str, list[float]] = {p: [] for p in protocols}
    conditions = [("quiet", None), ("neighbour", neighbour_core)]
    for condition, hog in conditions:
        with Neighbour(hog):
            for pass_ in (1, 2):
                for pname, protocol in protocols.items():
                    out = workdir / f"{name}_{pname.replace(':', '')}_{condition}_{pass_}.parquet"
                    result = run_campaign(get_backend(name), config, protocol, seed=0, count=count, out=out,
                                          repeat_every=0, reference_every=0)
                    seconds[pname].append(result.seconds)
                    lat, mins = values(out, protocol.duet)
                    ratio[pname].setdefault(condition, []).append(lat)
                    raw[pname].setdefault(condition, []).append(mins)
                    print(f"{name} {condition} pass {pass_} {pname}: {result.measured} in {result.seconds:.0f} s",
                          flush=True)
    report: dict[str, Any] = {"count": count}
    for pname, protocol in protocols.items():
        report[pname] = dict(compare(ratio[pname]), per_hour=float(3600 * count / np.mean(seconds[pname])))
        if protocol.duet:
            report[f"{pname} raw"] = compare(raw[pname])
    if ray_builder:
        firsts = {p.name: (n, p) for n, p in reversed(protocols.items())}
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))  # Ray's slot and builder claim cores of their own
        report["ray_builder"] = ray_with_builder(name, count, dict(firsts.values()), workdir)
        os.sched_setaffinity(0, {core})
    return report


def ray_with_builder(name: str, count: int, protocols: dict[str, MeasureProtocol], workdir: Path) -> dict[str, Any]:
    from latkit.cluster import Spec, run_campaign_ray

    out: dict[str, Any] = {}
    for pname, protocol in protocols.items():
        passes, seconds = [], []
        for pass_ in (1, 2):
            path = workdir / f"{name}_{pname.replace(':', '')}_ray_builder_{pass_}.parquet"
            result = run_campaign_ray(Spec(name, "cpu", {}, NetConfig(), protocol, 0), count=count, out=str(path),
                                      address="local", workers=1, builders=1, repeat_every=0, reference_every=0)
            seconds.append(result.seconds)
            passes.append(values(path, protocol.duet)[0])
            print(f"{name} ray+builder pass {pass_} {pname}: {result.measured} in {result.seconds:.0f} s", flush=True)
        out[pname] = {"noise_pct": noise_pct(*passes), "per_hour": float(3600 * count / np.mean(seconds))}
    return out


def markdown(reports: dict[str, dict[str, Any]]) -> str:
    lines = ["| backend | protocol:timed runs (latency) | noise quiet | noise with neighbour | quiet -> neighbour shift "
             "(spread) | rank agreement | architectures/hour |", "|---|---|---:|---:|---:|---:|---:|"]
    for name, r in reports.items():
        for key, m in r.items():
            if key in ("count", "ray_builder"):
                continue
            label = f"{key} (raw min)" if key.startswith("solo") or key.endswith("raw") else f"{key} (ratio)"
            rate = f"{m['per_hour']:,.0f}" if "per_hour" in m else ""
            lines.append(f"| {name} | {label.replace(' raw (raw min)', ' (raw min)')} | {m['noise_quiet_pct']:.2f}% | "
                         f"{m['noise_neighbour_pct']:.2f}% | {m['shift_pct']:+.2f}% ({m['spread_pct']:.2f}) | "
                         f"{m['spearman']:.3f} | {rate} |")
        for key, m in r.get("ray_builder", {}).items():
            lines.append(f"| {name} | {key}, 1 Ray slot + 1 builder | {m['noise_pct']:.2f}% | | | | "
                         f"{m['per_hour']:,.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backends", default="onnxruntime,openvino,torch")
    p.add_argument("--count", type=int, default=30)
    p.add_argument("--core", type=int, default=1)
    p.add_argument("--neighbour-core", type=int, default=0)
    p.add_argument("--variants", default="solo:30,duet:30,duet:20")
    p.add_argument("--ray-builder", action="store_true")
    p.add_argument("--out", default="benchmarks/duet")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    reports = {}
    with tempfile.TemporaryDirectory(prefix="latkit-duet-") as tmp:
        for name in args.backends.split(","):
            reports[name] = run_backend(name, args.count, args.core, args.neighbour_core,
                                        parse_variants(args.variants), args.ray_builder, Path(tmp))
            (out / "duet.json").write_text(json.dumps(reports, indent=2))
    (out / "duet.md").write_text(markdown(reports))
    print(markdown(reports))


if __name__ == "__main__":
    main()
