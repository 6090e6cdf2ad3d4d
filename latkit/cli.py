"""The ``latkit`` command line. ``main(argv)`` runs in-process and returns the exit code (testable).

A ``LatkitError`` is printed as one line on stderr with exit code 2; argparse usage errors also exit 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from rich.console import Console
from rich.table import Table

from latkit import __version__
from latkit.errors import LatkitError



def _add_net_args(p: argparse.ArgumentParser) -> None:
    """Evaluation-network shape options shared by every command that builds a network."""
    from latkit.network import NetConfig

    d = NetConfig()
    p.add_argument("--batch", type=int, default=d.batch, help="batch size (default %(default)s)")
    p.add_argument("--resolution", type=int, default=d.resolution, help="input height = width (default %(default)s)")
    p.add_argument("--channels", type=int, default=d.channels, help="initial channels (default %(default)s)")
    p.add_argument("--layers", type=int, default=d.layers, help="number of cells (default %(default)s)")


def _net_config(args: argparse.Namespace) -> "NetConfig":  # noqa: F821
    from latkit.network import NetConfig

    return NetConfig(layers=args.layers, channels=args.channels, resolution=args.resolution, batch=args.batch)


def _cmd_space_sample(args: argparse.Namespace, console: Console) -> int:
    from latkit.space import sample

    if args.count < 0:
        raise LatkitError(f"--count must be >= 0, got {args.count}")
    for index in range(args.start, args.start + args.count):
        g = sample(args.seed, index)
        print(json.dumps({"seed": args.seed, "index": index, "genotype": g.to_dict()}) if args.json else str(g))
    return 0


def _cmd_space_show(args: argparse.Namespace, console: Console) -> int:
    from latkit.network import build, count_macs, count_params
    from latkit.space import parse

    genotype = parse(args.genotype)
    model = build(genotype, _net_config(args))
    console.print(str(genotype), soft_wrap=True, highlight=False)
    table = Table(show_header=True)
    table.add_column("node")
    table.add_column("normal cell")
    table.add_column("reduction cell")
    for node in range(4):
        def edges(cell: tuple) -> str:
            return ", ".join(f"{op}({j})" for op, j in cell[2 * node: 2 * node + 2])
        table.add_row(str(node + 2), edges(genotype.normal), edges(genotype.reduce))
    console.print(table)
    c = model.config
    console.print(f"parameters: {count_params(model) / 1e6:.3f} M   MACs: {count_macs(model) / 1e6:.1f} M "
                  f"(batch {c.batch}, {c.in_channels}x{c.resolution}x{c.resolution}, {c.layers} layers, "
                  f"{c.channels} channels)", highlight=False)
    return 0


def _cmd_export(args: argparse.Namespace, console: Console) -> int:
    from latkit.network import build
    from latkit.onnx_export import export
    from latkit.space import parse

    path = export(build(parse(args.genotype), _net_config(args)), args.out)
    console.print(f"wrote {path}", highlight=False)
    return 0


def _cmd_backends(args: argparse.Namespace, console: Console) -> int:
    from latkit.backends.registry import backend_class, list_backends

    table = Table("backend", "device", "available", "reason / versions", "device name")
    for name in list_backends():
        cls = backend_class(name)
        for device in cls.devices:
            backend = cls(device=device)
            ok, reason = backend.availability()
            detail = reason if not ok else ", ".join(f"{k} {v}" for k, v in backend.versions().items())
            table.add_row(name, device, "yes" if ok else "no", detail, backend.device_name() if ok else "")
    console.print(table)
    return 0


def _protocol(args: argparse.Namespace) -> "MeasureProtocol":  # noqa: F821
    from latkit.backends.base import MeasureProtocol

    return MeasureProtocol(warmup_runs=args.warmup_runs, warmup_ms=args.warmup_ms, repeats=args.repeats,
                           threads=args.threads, min_cpu_share=args.min_cpu_share, max_attempts=args.max_attempts)


def _cmd_measure(args: argparse.Namespace, console: Console) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from latkit.backends.registry import get_backend
    from latkit.measure import Shard, default_dataset_name, run_campaign

    if args.count < 0:
        raise LatkitError(f"--count must be >= 0, got {args.count}")
    config = _net_config(args)
    protocol = _protocol(args)
    if args.pin_cpu is not None:
        try:
            os.sched_setaffinity(0, {args.pin_cpu})
        except (AttributeError, OSError, ValueError) as exc:
            raise LatkitError(f"cannot pin to CPU {args.pin_cpu}: {exc}") from None
    backend = get_backend(args.backend, args.device, protocol.threads)
    backend.check_available()
    out = args.out or default_dataset_name(args.backend, args.device, config)
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]:.2f} arch/s"), TimeRemainingColumn(),
               TextColumn("{task.fields[failures]} failed")]
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(f"{args.backend}/{args.device}", total=None, rate=0.0, failures=0)
        start = time.perf_counter()
        plain = not console.is_terminal

        def progress(done: int, total: int, failures: int) -> None:
            rate = done / (time.perf_counter() - start)
            bar.update(task, completed=done, total=total, rate=rate, failures=failures)
            if plain and (done % 50 == 0 or done == total):
                print(f"{done}/{total} architectures, {rate * 3600:.0f}/h, {failures} failed", flush=True)

        try:
            result = run_campaign(backend, config, protocol, seed=args.seed, count=args.count, out=out,
                                  shard=Shard.parse(args.shard), force=args.force,
                                  reference_every=args.reference_every, repeat_every=args.repeat_every,
                                  progress=progress)
        except KeyboardInterrupt:
            print(f"latkit: interrupted; {out} keeps every finished architecture, rerun the same command to resume",
                  file=sys.stderr)
            return 130
    rate = result.measured / result.seconds * 3600 if result.seconds else 0.0
    console.print(f"measured {result.measured} architectures ({result.failures} failed, {result.skipped} already in "
                  f"{out}) in {result.seconds:.0f} s: {rate:.0f} architectures/hour", highlight=False)
    return 0


def _cmd_dataset_info(args: argparse.Namespace, console: Console) -> int:
    from latkit.datasets.quality import summary
    from latkit.datasets.store import load

    ds = load(args.file)
    if args.datasheet:
        from latkit.datasets.quality import datasheet

        print(datasheet(ds, command=args.command_line or "(not recorded)", notes=args.notes or ""), end="")
        return 0
    s = summary(ds, stat=args.stat)
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    h = s["header"]
    c = h["config"]
    lat, nf, dr = s["latency_ms"], s["noise_floor"], s["drift"]
    console.print(f"[bold]{s['path']}[/]: {h['backend']} on {h['device']} ({h.get('device_name', '')}), batch "
                  f"{c['batch']}, {c['in_channels']}x{c['resolution']}x{c['resolution']}, {c['layers']} layers, "
                  f"{c['channels']} channels", highlight=False)
    console.print(f"rows {s['rows']}: {s['samples']} samples ({s['failures']} failed), {s['repeats']} repeats, "
                  f"{s['references']} reference timings", highlight=False)
    if lat:
        console.print(f"{s['stat']}: min {lat['min']:.3f}, median {lat['median']:.3f}, max {lat['max']:.3f} ms",
                      highlight=False)
    console.print(f"noise floor ({nf['pairs']} re-measured pairs): MAPE {nf['mape_pct']:.2f}%, "
                  f"p90 {nf['p90_ape_pct']:.2f}%", highlight=False)
    if dr.get("timings"):
        console.print(f"drift ({dr['timings']} timings of {h.get('reference')}): median {dr['median_ms']:.3f} ms, "
                      f"max deviation {dr['max_dev_pct']:.2f}%, CV {dr['cv_pct']:.2f}%", highlight=False)
    console.print(f"protocol {h['protocol']}", highlight=False)
    console.print(f"environment {h['environment']}", highlight=False)
    return 0


def _cmd_dataset_merge(args: argparse.Namespace, console: Console) -> int:
    from latkit.datasets.store import merge

    rows, dropped = merge(args.files, args.out, force=args.force)
    console.print(f"wrote {args.out}: {rows} rows ({dropped} duplicate samples dropped)", highlight=False)
    return 0


def _cmd_dataset_validate(args: argparse.Namespace, console: Console) -> int:
    from latkit.datasets.quality import validate

    ds = validate(args.file)
    console.print(f"{args.file}: valid ({ds.table.num_rows} rows)", highlight=False)
    return 0


def _cmd_fit(args: argparse.Namespace, console: Console) -> int:
    from latkit.predictors import fit_dataset

    predictor, held_out = fit_dataset(args.dataset, args.model, stat=args.stat, train_size=args.train_size,
                                      seed=args.seed)
    predictor.save(args.out)
    m = held_out
    console.print(f"{args.model} on {predictor.meta['training_size']} architectures of {args.dataset} ({args.stat}); "
                  f"held-out {m['n']}: MAPE {m['mape_pct']:.2f}%, RMSE {m['rmse_ms']:.3f} ms, within 5% "
                  f"{m['within5_pct']:.1f}%, within 10% {m['within10_pct']:.1f}%, Kendall {m['kendall']:.3f}; "
                  f"fit {predictor.meta['fit_seconds']:.1f} s -> {args.out}", highlight=False)
    return 0


def _cmd_predict(args: argparse.Namespace, console: Console) -> int:
    import warnings

    from latkit.predictors import load_predictor
    from latkit.space import encode, parse

    genotype = parse(args.genotype)
    predictor = load_predictor(args.predictor, device=args.device, kind=args.model)
    if args.backend:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            predictor.check_target(args.backend, args.device)
        for w in caught:
            print(f"latkit: warning: {w.message}", file=sys.stderr)
    ms = float(predictor.predict_ms(encode(genotype)[None])[0])
    print(f"{ms:.3f} ms")
    return 0


def _cmd_bench_predictors(args: argparse.Namespace, console: Console) -> int:
    from latkit.datasets import shipped
    from latkit.predictors import bench

    datasets = args.dataset or [str(p) for p in shipped()]
    if not datasets:
        raise LatkitError("no dataset given and none shipped; pass --dataset FILE")
    sizes = [None if s == "all" else int(s) for s in args.sizes.split(",")]
    rows = bench.run(datasets, kinds=args.models.split(",") if args.models else None, sizes=sizes, stat=args.stat,
                     log=lambda line: console.print(line, highlight=False))
    table = bench.markdown(rows)
    print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "predictors.md").write_text(table)
        (out / "predictors.json").write_text(json.dumps(rows))
        for path in bench.plot(rows, out):
            console.print(f"wrote {path}", highlight=False)
    return 0


def _search_predictor(args: argparse.Namespace) -> "object":
    import warnings

    from latkit.predictors import load_predictor

    predictor = load_predictor(args.predictor or args.target, device=args.device, kind=args.model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predictor.check_target(args.target, args.device)
    for w in caught:
        print(f"latkit: warning: {w.message}", file=sys.stderr)
    return predictor


def _set_threads(args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)


def _cmd_search(args: argparse.Namespace, console: Console) -> int:
    from latkit.search.pipeline import finish_search
    from latkit.search.searcher import run_search

    _set_threads(args)
    predictor = _search_predictor(args)
    out = Path(args.out)
    console.print(f"searching for {args.target}/{args.device} with the {predictor.kind} predictor, lambda "
                  f"{args.lam} ({args.form}), {args.epochs} epochs on {args.data} -> {out}", highlight=False)
    result = run_search(out, predictor=predictor, lam=args.lam, form=args.form, target_ms=args.target_ms,
                        data=args.data, data_dir=args.data_dir, resolution=args.resolution, limit=args.limit,
                        epochs=args.epochs, batch_size=args.batch_size, order=args.order, device=args.device,
                        layers=args.layers, channels=args.channels, seed=args.seed,
                        log=lambda line: console.print(line, highlight=False))
    result.update(lam=args.lam, form=args.form, predictor=predictor.kind)
    result = finish_search(result, args.target, args.device, predictor, not args.no_measure, out)
    console.print(result["genotype"], soft_wrap=True, highlight=False)
    line = f"predicted {result['latency_ms']:.3f} ms, {result['params'] / 1e6:.3f} M parameters"
    if "measured" in result:
        ref = result["reference"]["measured"]["min_ms"]
        line += (f"; measured on {args.target}/{args.device}: {result['measured']['min_ms']:.3f} ms (min), "
                 f"DARTS_V2 {ref:.3f} ms")
    console.print(line + f" -> {out / 'result.json'}", highlight=False)
    return 0


def _cmd_train(args: argparse.Namespace, console: Console) -> int:
    from latkit.search.pipeline import genotype_from
    from latkit.search.train import train_genotype

    _set_threads(args)
    genotype = genotype_from(args.genotype)
    result = train_genotype(genotype, data=args.data, data_dir=args.data_dir, epochs=args.epochs,
                            batch_size=args.batch_size, device=args.device, layers=args.layers,
                            channels=args.channels, resolution=args.resolution, limit=args.limit, seed=args.seed,
                            log=lambda line: console.print(line, highlight=False))
    console.print(f"test accuracy {100 * result['test_accuracy']:.2f}% ({result['params'] / 1e6:.3f} M parameters, "
                  f"{args.epochs} epochs on {args.data})", highlight=False)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _cmd_sweep(args: argparse.Namespace, console: Console) -> int:
    from latkit.search.pipeline import available_cpu_backends, finish_search, measure_ms, pareto_plot, \
        deployment_config
    from latkit.search.searcher import run_search
    from latkit.search.train import train_genotype
    from latkit.space import PUBLISHED, encode_many, parse

    _set_threads(args)
    try:
        lambdas = [float(x) for x in args.lambdas.split(",")]
    except ValueError:
        raise LatkitError(f"--lambdas must be comma-separated numbers, got {args.lambdas!r}") from None
    predictor = _search_predictor(args)
    out = Path(args.out)
    config = deployment_config(predictor)
    log = lambda line: console.print(line, highlight=False)  # noqa: E731
    candidates: list[tuple[str, object]] = [("DARTS_V2", PUBLISHED["DARTS_V2"])]
    for lam in lambdas:
        sub = out / f"lambda_{lam:g}"
        log(f"== search, lambda {lam:g} -> {sub}")
        result = run_search(sub, predictor=predictor, lam=lam, form=args.form, data=args.data,
                            data_dir=args.data_dir, resolution=args.resolution, limit=args.limit,
                            epochs=args.epochs, batch_size=args.batch_size, order=args.order, device=args.device,
                            layers=args.layers, channels=args.channels, seed=args.seed, log=log)
        result.update(lam=lam, form=args.form, predictor=predictor.kind)
        finish_search(result, args.target, args.device, predictor, False, sub)
        candidates.append((f"lambda={lam:g}", parse(result["genotype"])))
    backends = available_cpu_backends()
    rows = []
    for name, genotype in candidates:
        log(f"== train {name} for {args.train_epochs} epochs, measure on {len(backends)} backends")
        trained = train_genotype(genotype, data=args.data, data_dir=args.data_dir, epochs=args.train_epochs,
                                 batch_size=96, device=args.device, layers=args.train_layers,
                                 channels=args.train_channels, resolution=args.resolution, limit=args.limit,
                                 seed=args.seed)
        latencies = {f"{b}/{d}": measure_ms(b, d, genotype, config)["min_ms"] for b, d in backends}
        rows.append({"name": name, "genotype": str(genotype), "test_accuracy": trained["test_accuracy"],
                     "predicted_ms": float(predictor.predict_ms(encode_many([genotype]))[0]),
                     "measured_ms": latencies[f"{args.target}/{args.device}"], "latency_ms": latencies})
        log(f"{name}: accuracy {100 * trained['test_accuracy']:.2f}%, {args.target} {rows[-1]['measured_ms']:.3f} ms")
    cols = [f"{b}/{d}" for b, d in backends]
    table = (f"| architecture | test acc % | predicted ms | " + " | ".join(f"{c} ms" for c in cols) + " |\n"
             + "|---" * (3 + len(cols)) + "|\n")
    for r in rows:
        table += (f"| {r['name']} | {100 * r['test_accuracy']:.2f} | {r['predicted_ms']:.3f} | "
                  + " | ".join(f"{r['latency_ms'][c]:.3f}" for c in cols) + " |\n")
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.md").write_text(table)
    (out / "sweep.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(table)
    log(f"wrote {out / 'sweep.md'}, {pareto_plot(rows, out / 'pareto.png', args.target)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; each leaf command sets ``handler``."""
    from latkit.backends.base import MeasureProtocol

    parser = argparse.ArgumentParser(prog="latkit", description="latency toolkit for latency-aware DARTS")
    parser.add_argument("--version", action="version", version=f"latkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    space = sub.add_parser("space", help="the DARTS search space")
    space_sub = space.add_subparsers(dest="space_command", metavar="SUBCOMMAND", required=True)
    p = space_sub.add_parser("sample", help="print sampled genotypes (deterministic in seed and index)")
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--start", type=int, default=0, help="first sample index (default 0)")
    p.add_argument("--json", action="store_true", help="JSON lines instead of genotype strings")
    p.set_defaults(handler=_cmd_space_sample)
    p = space_sub.add_parser("show", help="parameters, MACs and ops of a genotype")
    p.add_argument("genotype", help="genotype string, JSON or published name (DARTS_V1, DARTS_V2, PC_DARTS)")
    _add_net_args(p)
    p.set_defaults(handler=_cmd_space_show)

    p = sub.add_parser("export", help="write a genotype's evaluation network as ONNX")
    p.add_argument("genotype", help="genotype string, JSON or published name")
    p.add_argument("--out", required=True, help="output .onnx path")
    _add_net_args(p)
    p.set_defaults(handler=_cmd_export)

    p = sub.add_parser("backends", help="list backends: available or not and why, versions, device")
    p.set_defaults(handler=_cmd_backends)

    p = sub.add_parser("measure", help="measure sampled architectures on a backend into a latency dataset")
    p.add_argument("--backend", required=True, choices=["torch", "onnxruntime", "tensorrt"])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--count", type=int, required=True, help="campaign size: sample indices 0..N-1")
    p.add_argument("--seed", type=int, default=0, help="sampling campaign seed (default 0)")
    p.add_argument("--shard", default="1/1", help="measure only indices i with i %% N == K-1 (default 1/1)")
    p.add_argument("--out", help="dataset file (default BACKEND_DEVICE_bB_rR_cC_lL.parquet)")
    p.add_argument("--force", action="store_true", help="append even if the environment fingerprint differs")
    _add_net_args(p)
    d = MeasureProtocol()
    p.add_argument("--threads", type=int, default=d.threads, help="CPU threads (default %(default)s)")
    p.add_argument("--repeats", type=int, default=d.repeats, help="timed runs (default %(default)s)")
    p.add_argument("--warmup-runs", type=int, default=d.warmup_runs, help="at least this many (default %(default)s)")
    p.add_argument("--warmup-ms", type=float, default=d.warmup_ms, help="and at least this long (default %(default)s)")
    p.add_argument("--min-cpu-share", type=float, default=d.min_cpu_share,
                   help="re-time a 1-thread CPU loop that got less of a core than this (default %(default)s)")
    p.add_argument("--max-attempts", type=int, default=d.max_attempts, help="timed loops at most (default %(default)s)")
    p.add_argument("--pin-cpu", type=int, help="run on this CPU core only (Linux), away from other work")
    p.add_argument("--reference-every", type=int, default=100, help="re-time DARTS_V2 every K samples (0: never)")
    p.add_argument("--repeat-every", type=int, default=20, help="re-measure an earlier sample every K (0: never)")
    p.set_defaults(handler=_cmd_measure)

    dataset = sub.add_parser("dataset", help="inspect, merge and validate latency datasets")
    dataset_sub = dataset.add_subparsers(dest="dataset_command", metavar="SUBCOMMAND", required=True)
    p = dataset_sub.add_parser("info", help="rows, failures, latency range, noise floor, drift, fingerprint")
    p.add_argument("file")
    p.add_argument("--stat", default="min_ms", help="statistic to summarise (default %(default)s)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--datasheet", action="store_true", help="print a Markdown datasheet")
    p.add_argument("--command-line", help="with --datasheet: the command that reproduces the file")
    p.add_argument("--notes", help="with --datasheet: free text on the measuring conditions")
    p.set_defaults(handler=_cmd_dataset_info)
    p = dataset_sub.add_parser("merge", help="join shards (refuses different fingerprints unless --force)")
    p.add_argument("files", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--force", action="store_true")
    p.set_defaults(handler=_cmd_dataset_merge)
    p = dataset_sub.add_parser("validate", help="check a dataset file; a corrupt or foreign file is an error")
    p.add_argument("file")
    p.set_defaults(handler=_cmd_dataset_validate)

    from latkit.predictors.fitting import DEFAULT_STAT

    p = sub.add_parser("fit", help="fit a latency predictor on a dataset and print its held-out metrics")
    p.add_argument("--dataset", required=True)
    p.add_argument("--model", default="mlp", choices=["mlp", "xgboost", "additive"])
    p.add_argument("--out", required=True, help="directory for the saved predictor")
    p.add_argument("--stat", default=DEFAULT_STAT, help="latency statistic to learn (default %(default)s)")
    p.add_argument("--train-size", type=int, help="use only this many training architectures")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=_cmd_fit)

    p = sub.add_parser("predict", help="predicted latency (ms) of a genotype")
    p.add_argument("--predictor", required=True, help="saved predictor directory, or a backend for its default")
    p.add_argument("genotype")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--model", default="mlp", choices=["mlp", "xgboost", "additive"],
                   help="which embedded default, when --predictor is a backend")
    p.add_argument("--backend", help="warn if the predictor was fitted for another backend")
    p.set_defaults(handler=_cmd_predict)

    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench_command", metavar="SUBCOMMAND", required=True)
    p = bench_sub.add_parser("predictors", help="every predictor x training size on a fixed held-out split")
    p.add_argument("--dataset", action="append", help="dataset file (repeatable; default: the shipped ones)")
    p.add_argument("--models", help="comma-separated subset of mlp,xgboost,additive")
    p.add_argument("--sizes", default="250,500,1000,2000,all")
    p.add_argument("--stat", default=DEFAULT_STAT)
    p.add_argument("--out", help="directory for the Markdown table, JSON rows and PNG plots")
    p.set_defaults(handler=_cmd_bench_predictors)

    def search_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--target", required=True, choices=["torch", "onnxruntime", "tensorrt"],
                       help="backend to deploy on: its predictor is the latency penalty")
        p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
        p.add_argument("--predictor", help="saved predictor directory (default: the target's embedded one)")
        p.add_argument("--model", default="mlp", choices=["mlp", "additive", "xgboost"])
        p.add_argument("--form", default="additive", choices=["additive", "relative", "log"])
        p.add_argument("--epochs", type=int, default=6, help="search epochs (default %(default)s; DARTS: 50)")
        p.add_argument("--order", type=int, default=1, choices=[1, 2])
        p.add_argument("--layers", type=int, default=8, help="supernet cells (default %(default)s)")
        p.add_argument("--channels", type=int, default=16, help="supernet channels (default %(default)s)")
        p.add_argument("--threads", type=int, help="torch CPU threads")
        data_args(p, batch=64)

    def data_args(p: argparse.ArgumentParser, batch: int) -> None:
        p.add_argument("--data", default="digits", choices=["digits", "cifar10", "synthetic"])
        p.add_argument("--data-dir", help="CIFAR-10 python-version folder")
        p.add_argument("--resolution", type=int, help="input size (default 16 for digits, 32 for CIFAR-10)")
        p.add_argument("--limit", type=int, help="use at most this many images per split")
        p.add_argument("--batch-size", type=int, default=batch)
        p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("search", help="latency-aware DARTS for a target backend")
    search_args(p)
    p.add_argument("--lambda", dest="lam", type=float, default=0.1, help="latency weight (0: plain DARTS)")
    p.add_argument("--target-ms", type=float, help="target latency T for --form relative")
    p.add_argument("--no-measure", action="store_true", help="skip measuring the result on the target")
    p.add_argument("--out", default="runs/search", help="output directory (default %(default)s)")
    p.set_defaults(handler=_cmd_search)

    p = sub.add_parser("train", help="train a genotype's evaluation network and report test accuracy")
    p.add_argument("genotype", help="genotype string, JSON, published name or a search's result.json")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int)
    p.add_argument("--out", help="write the result JSON here")
    data_args(p, batch=96)
    p.set_defaults(handler=_cmd_train)

    p = sub.add_parser("sweep", help="a search per lambda, trained and measured: the accuracy/latency front")
    search_args(p)
    p.add_argument("--lambdas", default="0,0.05,0.1,0.2,0.5")
    p.add_argument("--train-epochs", type=int, default=10)
    p.add_argument("--train-layers", type=int, default=8)
    p.add_argument("--train-channels", type=int, default=16)
    p.add_argument("--out", default="runs/sweep")
    p.set_defaults(handler=_cmd_sweep)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI in-process; returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return int(exc.code or 0)
    try:
        return args.handler(args, Console())
    except LatkitError as exc:
        print(f"latkit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("latkit: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
