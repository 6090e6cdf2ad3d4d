"""Where onnxruntime's error beyond the op groups comes from: the nodes of the graph its optimiser actually runs.

Usage: python -m benchmarks.graph_counts DATASET [--jobs 2] [--out DIR]

For every architecture of an onnxruntime/cpu duet file, the network is exported at the file's shape and handed to
onnxruntime with latkit's backend settings (``backends.ort.session_options``: every optimisation, one thread); the
optimised graph's nodes are counted by type (with its fused convolutions' activations and sums, and its NCHWc layout
reorders). Those counts are then added, by ridge on the fixed held-out split of `latkit bench predictors`, to the op
groups and to the `cse` predictor's terms: what they take off the held-out MAPE is structure the runtime's optimiser
creates and the encoding does not describe. The counts are kept in DIR/graph_counts.json (a re-run reads them: about 0.2 s an architecture
to make them, on one core per job).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from latkit.backends.ort import session_options
from latkit.datasets.quality import noise_floor
from latkit.datasets.store import load
from latkit.errors import LatkitError
from latkit.network import NetConfig, build
from latkit.onnx_export import to_onnx
from latkit.predictors.fitting import DEFAULT_STAT, dataset_xy, metrics, split
from latkit.space import Genotype, merged_ops, op_groups, sample

from benchmarks.common import node_pairs, ridge_cv


COUNT_ALPHAS = tuple(10.0 ** k for k in range(-5, 2))  # a count's ridge on the 524 encoding terms: up to 1,000s of rows


def rms(y: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.sqrt(np.mean((y - predicted) ** 2)))


def optimised_counts(genotype: Genotype, config: NetConfig) -> dict[str, int]:
    """Node counts by type of onnxruntime's optimised graph of ``genotype``, plus ``Conv+<activation>`` and
    ``Conv+sum`` for the convolutions that absorbed an activation or an addition."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = session_options(threads=1)
        options.optimized_model_filepath = os.path.join(tmp, "optimised.onnx")
        ort.InferenceSession(to_onnx(build(genotype, config)).SerializeToString(), options,
                             providers=["CPUExecutionProvider"])
        nodes = onnx.load(options.optimized_model_filepath).graph.node
    counts = collections.Counter(n.op_type for n in nodes)
    for n in nodes:
        if n.op_type == "Conv":
            counts.update(f"Conv+{a.s.decode()}" for a in n.attribute if a.name == "activation")
            counts["Conv+sum"] += len(n.input) == 4
    return dict(counts)


def _job(args: tuple[int, int, dict]) -> tuple[int, dict[str, int]]:
    seed, index, config = args
    return index, optimised_counts(sample(seed, index), NetConfig(**config))


def graph_counts(path: str, jobs: int, cache: Path | None) -> dict[int, dict[str, int]]:
    """Counts for every sample index of the dataset, from ``cache`` where it has them."""
    ds = load(path)
    if (ds.header["backend"], ds.header["device"]) != ("onnxruntime", "cpu"):
        raise LatkitError(f"{path} is {ds.header['backend']}/{ds.header['device']}: this reads onnxruntime/cpu's "
                          "optimised graph")
    have = {int(k): v for k, v in json.loads(cache.read_text()).items()} if cache and cache.exists() else {}
    _, _, index, _ = dataset_xy(ds, DEFAULT_STAT)
    todo = sorted(set(int(i) for i in index) - set(have))
    if todo:
        print(f"optimising {len(todo)} graphs on {jobs} process(es)", flush=True)
        with Pool(jobs) as pool:
            have.update(pool.map(_job, [(ds.header["seed"], i, ds.header["config"]) for i in todo], chunksize=10))
        if cache:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps({str(k): have[k] for k in sorted(have)}) + "\n")
    return have


def run(path: str, counts: dict[int, dict[str, int]]) -> list[dict]:
    """Held-out MAPE of ridge fits on the op groups or the cse terms, alone, with all graph counts, and with each
    count that varies over the architectures; for each such count also how much of it the encoding describes: the
    held-out residual sd of a ridge of the count on the table, the node pairs and the merged ops, beside its sd."""
    ds = load(path)
    x, y, index, clean = dataset_xy(ds, DEFAULT_STAT)
    train, test = split(index, clean)
    test &= clean
    kinds = sorted({k for c in counts.values() for k in c})
    g = np.array([[counts[int(i)].get(k, 0) for k in kinds] for i in index], dtype=np.float64)
    varying = [k for j, k in enumerate(kinds) if g[:, j].std() > 0]
    g = g[:, [kinds.index(k) for k in varying]]
    groups = x @ op_groups()
    cse = np.concatenate([groups, merged_ops(x)], 1)
    models = {"op groups": groups, "cse terms": cse, "op groups + graph counts": np.concatenate([groups, g], 1),
              "cse terms + graph counts": np.concatenate([cse, g], 1)}
    models.update({f"cse terms + {k}": np.concatenate([cse, g[:, [j]]], 1) for j, k in enumerate(varying)})
    floor = noise_floor(ds, DEFAULT_STAT, ds.header.get("protocol", {}).get("min_cpu_share"))
    rows = []
    encoding = np.concatenate([x, node_pairs(x), merged_ops(x)], 1)
    for name, f in models.items():
        w, b = ridge_cv(f[train], y[train])
        row = {"model": name, "mape_pct": metrics(y[test], f[test] @ w + b)["mape_pct"],
               "noise_single_pct": floor["single_mape_pct"], "test_rows": int(test.sum()),
               "train_rows": int(train.sum())}
        if name.startswith("cse terms + ") and name != "cse terms + graph counts":
            count = g[:, varying.index(name.removeprefix("cse terms + "))]
            w, b = ridge_cv(encoding[train], count[train], COUNT_ALPHAS, rms)
            row.update(count_sd=float(count[test].std()),
                       unexplained_sd=float((count[test] - encoding[test] @ w - b).std()))
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    out = ["| features (ridge) | held-out MAPE % | x the noise | the count's sd over architectures | of it, what the "
           "encoding leaves (sd) |", "|---|---|---|---|---|"]
    out += [f"| {r['model']} | {r['mape_pct']:.2f} | {r['mape_pct'] / r['noise_single_pct']:.2f} | "
            + (f"{r['count_sd']:.1f} | {r['unexplained_sd']:.1f} |" if "count_sd" in r else " | |") for r in rows]
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out")
    args = parser.parse_args()
    out = Path(args.out) if args.out else None
    try:
        rows = run(args.dataset, graph_counts(args.dataset, args.jobs, out / "graph_counts.json" if out else None))
    except LatkitError as exc:
        sys.exit(f"error: {exc}")
    table = markdown(rows)
    print(f"\n{Path(args.dataset).name}: {rows[0]['train_rows']} training rows, {rows[0]['test_rows']} held out, "
          f"noise {rows[0]['noise_single_pct']:.2f}%\n\n{table}")
    if out:
        (out / "graph_counts.md").write_text(table)


if __name__ == "__main__":
    main()
