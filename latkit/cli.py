"""The ``latkit`` command line. ``main(argv)`` runs in-process and returns the exit code (testable).

A ``LatkitError`` is printed as one line on stderr with exit code 2; argparse usage errors also exit 2.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from latkit import __version__
from latkit.atomic import check_out, write_bytes
from latkit.errors import LatkitError, LatkitWarning


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (``latkit: error: ...``, exit 2) instead of usage plus message."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"latkit: error: {self.prog.removeprefix('latkit ')}: {message}", file=sys.stderr)
        raise SystemExit(2)


def _number(kind: type, low: float | None = None, high: float | None = None, *, low_open: bool = False):
    """An argparse type: a finite ``kind`` (int or float) within [low, high] (``low_open``: above low)."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if kind is float and not math.isfinite(value):  # (an int is finite; one past 1e308 has no float)
            raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
        if low is not None and (value <= low if low_open else value < low):
            raise argparse.ArgumentTypeError(f"must be {'>' if low_open else '>='} {low:g}, got {text!r}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be <= {high if kind is int else format(high, 'g')}, got "
                                             f"{text!r}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


# Every integer option is bounded where it is parsed, so a huge value is one line before anything runs (not an
# OverflowError deep inside, nor a plan that takes all memory). A seed is written to a dataset's int64 column and
# seeds numpy and torch: 0 .. 2**63 - 1. Anything else (architectures to measure, indices, pools, repeats, threads,
# layers, epochs, ...) at most 10**7: a campaign that size is years of measuring at the rates seen (hundreds to
# thousands of architectures an hour), and its plan (a Python list of indices, ~0.5 GB) still fits in memory, where
# 10**10 would not; 10**7 is also far below every C integer limit these values reach.
MAX_SEED = 2**63 - 1
MAX_COUNT = 10**7
COUNT = _number(int, 0, MAX_COUNT)  # a count: 0 or more
POSITIVE_INT = _number(int, 1, MAX_COUNT)
SEED = _number(int, 0, MAX_SEED)
SEEDS = _number(int, None, MAX_SEED)  # an item of a list of seeds (the library checks the rest)
NONNEG_FLOAT = _number(float, 0)
POSITIVE_FLOAT = _number(float, 0, low_open=True)
FRACTION = _number(float, 0, 1)


def PATH(text: str) -> str:
    """An argparse type: a file or directory name, not empty (an empty --out would fall back to a default name)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty: name a file or directory")
    return text


def SHARD(text: str) -> Any:
    """An argparse type: ``K/N`` as a campaign Shard, N bounded like every count."""
    from latkit.campaign import Shard

    try:
        shard = Shard.parse(text)
    except LatkitError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("--shard ")) from None
    if shard.n > MAX_COUNT:
        raise argparse.ArgumentTypeError(f"N must be <= {MAX_COUNT}, got {text!r}")
    return shard


def _add_net_args(p: argparse.ArgumentParser) -> None:
    """Evaluation-network shape options shared by every command that builds a network."""
    from latkit.network import NetConfig

    d = NetConfig()
    p.add_argument("--batch", type=POSITIVE_INT, default=d.batch, help="batch size (default %(default)s)")
    p.add_argument("--resolution", type=POSITIVE_INT, default=d.resolution,
                   help="input height = width (default %(default)s)")
    p.add_argument("--channels", type=POSITIVE_INT, default=d.channels, help="initial channels (default %(default)s)")
    p.add_argument("--layers", type=POSITIVE_INT, default=d.layers, help="number of cells (default %(default)s)")


def _net_config(args: argparse.Namespace) -> "NetConfig":  # noqa: F821
    from latkit.network import NetConfig

    return NetConfig(layers=args.layers, channels=args.channels, resolution=args.resolution, batch=args.batch)


def _cmd_space_sample(args: argparse.Namespace, console: Console) -> int:
    from latkit.space import sample

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
            # Text, not markup: a reason such as "pip install 'latkit[gpu]'" must print as written
            table.add_row(name, device, "yes" if ok else "no", Text(detail), backend.device_name() if ok else "")
    console.print(table)
    return 0


def _backend_options(pairs: list[str] | None) -> dict[str, str]:
    """``--backend-option KEY=VALUE`` (repeatable) as a dict; typed against the backend's options later."""
    options = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise LatkitError(f"--backend-option must look like KEY=VALUE, got {pair!r}")
        options[key.strip()] = value.strip()
    return options


def _add_backend_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend-option", "-O", action="append", metavar="KEY=VALUE",
                   help="a setting of the backend (repeatable; e.g. precision=f32 for openvino, fp16=true for "
                        "tensorrt, regional=false for torch-compile); recorded in the dataset's identity")


def _add_protocol_args(p: argparse.ArgumentParser, campaign: bool = True) -> None:
    """The measurement protocol's options (shared by ``measure`` and ``bench MODEL.onnx``; ``--solo`` for
    campaigns)."""
    from latkit.backends.timing import MeasureProtocol

    d = MeasureProtocol()
    p.add_argument("--threads", type=POSITIVE_INT, default=d.threads, help="CPU threads (default %(default)s)")
    p.add_argument("--repeats", type=POSITIVE_INT, default=d.repeats, help="timed runs (default %(default)s)")
    p.add_argument("--warmup-runs", type=COUNT, default=d.warmup_runs, help="at least this many (default %(default)s)")
    p.add_argument("--warmup-ms", type=NONNEG_FLOAT, default=d.warmup_ms,
                   help="and at least this long (default %(default)s)")
    p.add_argument("--min-cpu-share", type=FRACTION, default=d.min_cpu_share,
                   help="re-time a 1-thread CPU loop that got less of a core than this (default %(default)s)")
    p.add_argument("--max-attempts", type=POSITIVE_INT, default=d.max_attempts,
                   help="timed loops at most (default %(default)s)")
    if campaign:
        p.add_argument("--solo", action="store_true",
                       help="time each architecture alone, not beside the reference DARTS_V2 (the protocol of "
                            "datasets measured before the duet; its latency moves with the host's speed)")


def _protocol(args: argparse.Namespace) -> "MeasureProtocol":  # noqa: F821
    from latkit.backends.timing import MeasureProtocol

    return MeasureProtocol(warmup_runs=args.warmup_runs, warmup_ms=args.warmup_ms, repeats=args.repeats,
                           threads=args.threads, min_cpu_share=args.min_cpu_share, max_attempts=args.max_attempts,
                           duet=not getattr(args, "solo", True))


def _cmd_measure(args: argparse.Namespace, console: Console) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from latkit.backends.registry import get_backend
    from latkit.campaign import run_campaign
    from latkit.measure import default_dataset_name
    from latkit.selection import select_indices

    config = _net_config(args)
    protocol = _protocol(args)
    if args.ray is None and (args.workers is not None or args.builders):
        raise LatkitError("--workers and --builders need --ray")
    if args.ray is not None and args.pin_cpu is not None:
        raise LatkitError("--pin-cpu and --ray: each Ray worker pins itself to a core of its own")
    backend = get_backend(args.backend, args.device, protocol.threads, _backend_options(args.backend_option))
    args.device = backend.device  # a backend with one device (tensorrt: cuda) defaults to it
    if args.ray is None:  # on Ray the workers' machines must have it, not this one
        backend.check_available()
    out = args.out or default_dataset_name(args.backend, args.device, config)
    columns = [TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
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

        common = dict(count=args.count, out=out, indices=select_indices(args.seed, args.count, args.select, args.pool),
                      shard=args.shard, force=args.force, reference_every=args.reference_every,
                      repeat_every=args.repeat_every, retry_errors=args.retry_errors,
                      max_consecutive_failures=args.max_failures, progress=progress)
        if args.burn_in_s:
            console.print(f"each worker times DARTS_V2 for {args.burn_in_s:g} s before its first architecture "
                          "(burn-in, thrown away)", highlight=False)
        try:
            if args.ray is not None:
                from latkit.cluster import Spec, run_campaign_ray

                spec = Spec(args.backend, args.device, _backend_options(args.backend_option), config, protocol,
                            args.seed, args.burn_in_s)
                bar.update(task, description=f"{args.backend}/{args.device} on Ray")
                result = run_campaign_ray(spec, address=args.ray, workers=args.workers, builders=args.builders,
                                          ahead=args.ahead, log=lambda line: console.print(line, highlight=False),
                                          **common)
                bar.update(task, description=f"{args.backend}/{args.device} on Ray, {result.workers} workers")
            else:
                result = run_campaign(backend, config, protocol, seed=args.seed, pin_cpu=args.pin_cpu,
                                      burn_in_s=args.burn_in_s, **common)
        except KeyboardInterrupt:
            print(f"latkit: interrupted; {out} keeps every finished architecture, rerun the same command to resume",
                  file=sys.stderr)
            return 130
    if result.dropped_line is not None:
        print(f"latkit: warning: cut off a partial last line ({result.dropped_line}) of {out}.journal, a write cut "
              "short by a crash; its architecture was measured again", file=sys.stderr)
    if result.set_aside:
        print(f"latkit: warning: {result.set_aside} unreadable journal line(s) of {out} moved to "
              f"{out}.journal.rejected; their rows are not in the dataset", file=sys.stderr)
    rate = result.measured / result.seconds * 3600 if result.seconds else 0.0
    retried = f", {result.retried} of them retried after an error" if result.retried else ""
    on_ray = ""
    if args.ray is not None:
        on_ray = f" on {result.workers} Ray workers" + (f" ({result.replaced} replaced after dying, {result.requeued} "
                                                        "jobs queued again)" if result.requeued else "")
    console.print(f"measured {result.measured} architectures{on_ray} ({result.failures} failed{retried}, "
                  f"{result.skipped} already in {out}) in {result.seconds:.0f} s: {rate:.0f} architectures/hour",
                  highlight=False)
    return 0


def _cmd_dataset_info(args: argparse.Namespace, console: Console) -> int:
    from latkit.datasets.quality import describe_run, frozen_note, journal_warnings, summary
    from latkit.datasets.store import load

    ds = load(args.file)
    for warning in journal_warnings(ds):
        print(f"latkit: warning: {warning}", file=sys.stderr)
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
    shape = (f"batch {c['batch']}, {c.get('in_channels', '?')}x{c['resolution']}x{c['resolution']}, "
             f"{c['layers']} layers, {c['channels']} channels" if "layers" in c
             else f"models of input shape {c.get('input_shape')}")
    console.print(f"{s['path']}: {h['backend']} on {h['device']} ({h.get('device_name', '')}), {shape}",
                  highlight=False)
    superseded = f", {s['superseded']} error rows superseded by a retry" if s["superseded"] else ""
    console.print(f"rows {s['rows']}: {s['samples']} samples ({s['failures']} failed{superseded}), {s['repeats']} "
                  f"repeats, {s['references']} reference timings"
                  + (f", {s['anchor_rows']} anchor timings" if s["anchor_rows"] else ""), highlight=False)
    norm = "normalised " if s["normalised"] else ""
    if lat:
        console.print(f"{norm}{s['stat']}: min {lat['min']:.3f}, median {lat['median']:.3f}, max {lat['max']:.3f} ms",
                      highlight=False)
    floors = [(norm, nf, dr)] + ([("raw ", s["noise_floor_raw"], s["drift_raw"])] if norm else [])
    for label, nf, dr in floors:
        console.print(f"{label}noise floor ({nf['pairs']} re-measured pairs): pair MAPE {nf['mape_pct']:.2f}% (p90 "
                      f"{nf['p90_ape_pct']:.2f}%; two measurements of one architecture), single measurement "
                      f"{nf['single_mape_pct']:.2f}% (pair / sqrt 2)", highlight=False)
        if dr.get("timings"):
            what = "the duet's own noise (DARTS_V2 beside itself)" if label == norm and norm else f"{label}drift"
            console.print(f"{what}: {dr['timings']} timings of {h.get('reference')} as a sample, median "
                          f"{dr['median_ms']:.3f} ms, max deviation {dr['max_dev_pct']:.2f}%, CV {dr['cv_pct']:.2f}%",
                          highlight=False)
    rw = s["reference_windows"]
    if rw.get("windows"):
        console.print(f"reference in each window ({rw['windows']}): baseline {rw['baseline_ms']:.3f} ms"
                      f"{frozen_note(rw)} (normalised latencies are in it), CV {rw['cv_pct']:.2f}%, {rw['flagged']} windows more than "
                      f"{rw['bound_pct']:.0f}% slower than the baseline", highlight=False)
        nf = s["noise_floor_unflagged"]
        console.print(f"normalised noise floor over pairs whose both windows are unflagged ({nf['pairs']} pairs): "
                      + (f"single measurement {nf['single_mape_pct']:.2f}%" if nf["pairs"] else "none"),
                      highlight=False)
    console.print(f"protocol {s['protocol']} {h['protocol']}", highlight=False)
    if h.get("backend_options"):
        console.print(f"backend options {h['backend_options']}", highlight=False)
    console.print(f"environment {h['environment']}", highlight=False)
    if s["anchors"]:
        console.print(f"anchors (re-timed first by every later run; its level divided out): samples "
                      f"{', '.join(map(str, s['anchors']))}", highlight=False)
    for run_id, rows in s["rows_per_run"].items():
        run = ds.runs.get(run_id)
        level = s["levels"].get(run_id)
        console.print(f"run {run_id}: {rows} rows, " + (describe_run(run) if run else "no provenance recorded "
                      "(written before latkit recorded runs)")
                      + (f", level {100 * (level - 1):+.2f}% (min_ms ratio over the file's, median of its anchors)"
                         if level is not None else ""), highlight=False)
    return 0


def _cmd_dataset_merge(args: argparse.Namespace, console: Console) -> int:
    from latkit.datasets.store import merge

    r = merge(args.files, args.out, force=args.force, rebase=args.rebase)
    console.print(f"wrote {args.out}: {r.rows} rows from {len(args.files)} files, {r.runs} runs with provenance; "
                  f"{r.duplicates} duplicate rows dropped, {r.superseded} error rows superseded by an ok row, "
                  f"{r.conflicts} conflicting ok rows dropped (the first input's row kept"
                  + (f"; largest min_ms difference {r.max_conflict_pct:.2f}%)" if r.conflicts else ")"),
                  highlight=False, soft_wrap=True)
    if r.baseline_ms is not None:
        how = "from all the merged rows" if r.rebased else "the inputs' frozen one"
        console.print(f"its normalised latencies are in the baseline {r.baseline_ms:.4f} ms (min_ms; {how})",
                      highlight=False)
    if r.unreadable:
        print(f"latkit: warning: {r.unreadable} unreadable journal line(s) in the inputs were not merged "
              "(dataset validate shows where)", file=sys.stderr)
    return 0


def _cmd_dataset_rebase(args: argparse.Namespace, console: Console) -> int:
    from latkit.datasets.store import rebase

    old, new = rebase(args.file)
    console.print(f"{args.file}: baseline {old:.4f} -> {new:.4f} ms (min_ms): its normalised latencies move by "
                  f"{100 * (new / old - 1):+.2f}%; predictors fitted on it before keep the old unit (refit them)",
                  highlight=False)
    return 0


def _cmd_dataset_validate(args: argparse.Namespace, console: Console) -> int:
    from latkit.datasets.quality import journal_warnings, validate

    ds = validate(args.file)
    for warning in journal_warnings(ds):
        print(f"latkit: warning: {warning}", file=sys.stderr)
    console.print(f"{args.file}: valid ({ds.table.num_rows} rows)", highlight=False)
    return 0


def _cmd_fit(args: argparse.Namespace, console: Console) -> int:
    from latkit.predictors import fit_dataset
    from latkit.predictors.base import check_save_path
    from latkit.predictors.fitting import fit_transfer

    check_save_path(args.out)  # before the fit: a path it cannot save to is one line, not a fit's warnings and one
    if args.prior:
        predictor, held_out = fit_transfer(args.dataset, args.prior, stat=args.stat, train_size=args.train_size,
                                           seed=args.seed, prior_kind=args.prior_model, normalised=not args.raw)
    else:
        predictor, held_out = fit_dataset(args.dataset, args.model, stat=args.stat, train_size=args.train_size,
                                          seed=args.seed, normalised=not args.raw)
    for warning in predictor.meta.get("warnings", []):
        print(f"latkit: warning: {warning}", file=sys.stderr)
    predictor.save(args.out)
    meta = predictor.meta
    unit = f"{args.stat}, normalised" if meta["normalised"] else args.stat
    what = f"{predictor.kind} on {meta['training_size']} architectures of {args.dataset} ({unit})"
    if held_out is None:
        r = meta["fit_report"]
        nested = r.get("nested_loo_mape_pct")
        nested = f" ({nested:.2f}% with the choice made again without each row)" if nested is not None else ""
        console.print(f"{what} from {', '.join(args.prior)}: leave-one-out MAPE {r['loo_mape_pct']:.2f}%{nested}, "
                      f"scales {', '.join(f'{a:.3f}' for a in r['scales'])}, shift {r['shift_ms']:.3f} ms, "
                      f"corrections: per op group {r['group_ridge'] or 'none'}, per edge {r['edge_ridge'] or 'none'}; "
                      f"{100 * meta['interval']['level']:.0f}% interval +-"
                      f"{100 * predictor.interval_rel:.1f}% -> {args.out}", highlight=False)
        return 0
    m, c = held_out, held_out["undisturbed"]
    kendall = f"{m['kendall']:.3f}" if math.isfinite(m["kendall"]) else "n/a (under 2 held-out rows, or all alike)"
    console.print(f"{what}; held-out {m['n']}: MAPE {m['mape_pct']:.2f}% ({c['n']} undisturbed: {c['mape_pct']:.2f}%), "
                  f"RMSE {m['rmse_ms']:.3f} ms, within 5% {m['within5_pct']:.1f}%, within 10% "
                  f"{m['within10_pct']:.1f}%, Kendall {kendall}; "
                  f"{100 * meta['interval']['level']:.0f}% interval +-{100 * meta['interval']['rel']:.1f}% covers "
                  f"{m['interval_coverage_pct']:.1f}% ({c['interval_coverage_pct']:.1f}% undisturbed); fit {meta['fit_seconds']:.1f} s -> {args.out}", highlight=False)
    return 0


def _cmd_predict(args: argparse.Namespace, console: Console) -> int:
    from latkit.space import encode, parse

    from latkit.predictors.base import warn_unidentified
    from latkit.predictors.fitting import predictor_for

    genotype = parse(args.genotype)
    predictor = predictor_for(args.predictor, args.backend, args.device, args.model, args.force_predictor)
    warn_unidentified(genotype)
    x = encode(genotype)[None]
    scale = 1.0
    if args.calibrate:
        from latkit.api import calibrate

        cal = calibrate(predictor)
        scale = cal["scale"]
        how = (f"{cal['anchors']} of its dataset's anchors timed here now" if cal["anchors"] else
               f"{predictor.meta.get('reference')} runs here now in {cal['reference_ms']:.3f} ms, the dataset's "
               f"baseline {cal['baseline_ms']:.3f} ms")
        print(f"calibrated: {how}: scale {scale:.4f}", file=sys.stderr)
    ms = scale * float(predictor.predict_ms(x)[0])
    unit = "raw (this machine now, calibrated)" if args.calibrate else predictor.unit
    interval = ""
    if not args.no_interval and predictor.meta.get("interval"):
        lo, hi = (scale * float(v[0]) for v in predictor.interval_ms(x))
        interval = f"; {100 * predictor.meta['interval']['level']:.0f}% interval {lo:.3f} - {hi:.3f} ms"
    print(f"{ms:.3f} ms {unit} ({predictor.kind} predictor{interval})")
    return 0


def _cmd_bench_predictors(args: argparse.Namespace, console: Console) -> int:
    from latkit.datasets import shipped
    from latkit.predictors import bench

    datasets = args.dataset or [str(p) for p in shipped()]
    if not datasets:
        raise LatkitError("no dataset given and none shipped; pass --dataset FILE")
    try:
        sizes = [None if s == "all" else int(s) for s in args.sizes.split(",")]
    except ValueError:
        raise LatkitError(f"--sizes must be comma-separated integers or 'all', got {args.sizes!r}") from None
    kinds = args.models.split(",") if args.models else None
    if args.out:
        check_out(args.out, directory=True)
    rows = bench.run(datasets, kinds=kinds, sizes=sizes, stat=args.stat, seeds=_numbers(args.seeds, SEEDS, "--seeds"),
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


def _cmd_recommend(args: argparse.Namespace, console: Console) -> int:
    from latkit.predictors import recommend

    if args.write or args.dataset or args.out:
        if args.write and args.dataset:
            raise LatkitError("--write regenerates the shipped table from the shipped datasets; with --dataset, "
                              "write elsewhere with --out")
        if args.write or args.out:
            check_out(args.out or recommend.table_path())  # before fitting every kind on every dataset
        table = recommend.build_table(args.dataset, log=lambda line: console.print(line, highlight=False))
        if args.write or args.out:
            console.print(f"wrote {recommend.write_table(table, args.out)}", highlight=False)
    else:
        table = recommend.load_table()
    print(recommend.markdown(table), end="")
    return 0


def _cmd_bench_transfer(args: argparse.Namespace, console: Console) -> int:
    from latkit.datasets import shipped
    from latkit.predictors import bench

    datasets = args.dataset or [str(p) for p in shipped()]
    sizes = _numbers(args.sizes, _number(int, None, MAX_COUNT), "--sizes")
    if args.out:
        check_out(args.out, directory=True)
    rows = bench.transfer_run(datasets, sizes=sizes, draws=args.draws, log=lambda l: console.print(l, highlight=False),
                              prior_kind=args.prior_model)
    table = bench.transfer_markdown(rows)
    print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "transfer.md").write_text(table)
        (out / "transfer.json").write_text(json.dumps(rows))
        for path in bench.transfer_plot(rows, out):
            console.print(f"wrote {path}", highlight=False)
    return 0


def _cmd_bench_model(args: argparse.Namespace, console: Console) -> int:
    from latkit.backends.registry import get_backend
    from latkit.measure import bench_model, reference_for
    from latkit.onnx_model import load_onnx

    protocol = _protocol(args)
    backend = get_backend(args.backend, args.device, protocol.threads, _backend_options(args.backend_option))
    args.device = backend.device
    backend.check_available()
    source = load_onnx(args.model, args.batch)
    reference = None if args.reference is None else reference_for(args.reference, source)
    row = bench_model(backend, source, protocol, args.out, reference)
    if row["status"] != "ok":
        kept = f" (the error row is in {args.out})" if args.out else ""
        raise LatkitError(f"{args.backend}/{args.device} cannot run {source.name}: {row['error']}{kept}")
    print(f"{source.name} on {args.backend}/{args.device}, input {'x'.join(map(str, source.input_shape))}, "
          f"{row['n']} timed runs (prepare {row['prepare_ms']:.0f} ms, warm-up {row['warmup_ms']:.0f} ms)")
    print("  " + ", ".join(f"{c[:-3]} {row[c]:.3f} ms" for c in ("min_ms", "median_ms", "mean_ms", "p10_ms",
                                                                   "p90_ms", "iqm_ms", "std_ms")))
    if reference is not None:
        print(f"  beside {reference.name} in the same window: its min {row['ref_min_ms']:.3f} ms; ratio "
              f"{row['ratio']:.4f} (min / the reference's min: comparable across days and hosts of a kind)")
    if args.out:
        print(f"appended to {args.out}")
    return 0


def _set_threads(args: argparse.Namespace) -> None:
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)


def _search_kwargs(args: argparse.Namespace) -> dict:
    """``run_search``'s keyword arguments from the search options."""
    return dict(data=args.data, data_dir=args.data_dir, resolution=args.resolution, limit=args.limit,
                epochs=args.epochs, batch_size=args.batch_size, order=args.order, device=args.search_device,
                layers=args.layers, channels=args.channels, seed=args.seed, max_skip=args.max_skip,
                max_free=None if args.max_free < 0 else args.max_free, beta_decay=args.beta_decay)


def _cmd_search(args: argparse.Namespace, console: Console) -> int:
    from latkit.search.pipeline import search

    _set_threads(args)
    bar, progress = _batch_bar(console, "search")
    with bar:
        result = search(args.target, out=args.out, target_device=args.target_device, predictor=args.predictor,
                        model=args.model, force_predictor=args.force_predictor, lam=args.lam, form=args.form,
                        target_ms=args.target_ms, combine=args.combine, measure=not args.no_measure,
                        log=lambda line: console.print(line, highlight=False), progress=progress,
                        **_search_kwargs(args))
    console.print(result["genotype"], soft_wrap=True, highlight=False)
    cells = result["cells"]
    console.print(f"parameter-free ops: normal cell {cells['normal']['parameter_free']} of 8 "
                  f"({cells['normal']['skip_connect']} skip), reduction cell {cells['reduce']['parameter_free']} of 8",
                  highlight=False)
    for warning in result["warnings"]:
        print(f"latkit: warning: {warning}", file=sys.stderr)
    name = f"{result['target']}/{result['target_device']}"
    predicted = result.get("latencies_ms") or {name: result["latency_ms"]}
    console.print("predicted " + ", ".join(f"{k} {v:.3f} ms" for k, v in predicted.items())
                  + f" {result['unit']} (the {', '.join(dict.fromkeys(result['predictors']))} predictor"
                  f"{'s' if len(predicted) > 1 else ''}); {result['params'] / 1e6:.3f} M parameters",
                  highlight=False)
    for target, m in (result.get("per_target") or ({name: result} if "measured" in result else {})).items():
        console.print(f"measured on {target}: {_measured(m)}", highlight=False)
    console.print(f"-> {Path(args.out) / 'result.json'}", highlight=False)
    return 0


def _measured(m: dict) -> str:
    """A target's measurement in the predictor's unit beside the raw figures, with DARTS_V2 timed beside it."""
    mine, darts = m["measured"], m["reference"]["measured"]
    raw = (f"raw {mine['min_ms']:.3f} ms (min, this machine now; DARTS_V2 {darts['min_ms']:.3f} ms raw in its own "
           "window)")
    if mine.get("in_unit_ms") is None:
        return raw
    gap = 100 * (mine["in_unit_ms"] / m["predicted_ms"] - 1)
    how = (f"{mine['ratio']:.3f} x DARTS_V2 timed beside it, times the predictor's baseline"
           if m["unit"] == "normalised" else "the min")
    return f"{mine['in_unit_ms']:.3f} ms {m['unit']} ({how}; {gap:+.1f}% against the prediction); {raw}"


def _batch_bar(console: Console, label: str) -> "tuple[Progress, BatchProgress]":  # noqa: F821
    """A bar of the current epoch's batches (done/total, running loss, elapsed) and the callback that moves it;
    on a console that is not a terminal it shows nothing (the epoch log lines remain)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
               TextColumn("batches  loss {task.fields[loss]:.4f}"), TimeElapsedColumn()]
    bar = Progress(*columns, console=console, transient=True, disable=not console.is_terminal)
    task = bar.add_task(label, total=None, loss=float("nan"))

    def progress(batch: int, batches: int, running_loss: float) -> None:
        if batch == 1:  # a new epoch: restart the bar and its clock
            bar.reset(task, total=batches)
        bar.update(task, completed=batch, total=batches, loss=running_loss)

    return bar, progress


def _cmd_train(args: argparse.Namespace, console: Console) -> int:
    from latkit.search.pipeline import genotype_from
    from latkit.search.train import train_genotype

    _set_threads(args)
    genotype = genotype_from(args.genotype)
    for path, directory in ((args.out_dir, True), (args.out, False)):
        if path is not None:
            check_out(path, directory=directory)  # before training, not after it
    if args.out and args.out_dir and Path(args.out).absolute() == Path(args.out_dir).absolute():
        raise LatkitError(f"--out {args.out} is --out-dir: the result JSON is a file in another place")
    bar, progress = _batch_bar(console, "train")
    try:
        with bar:
            result = train_genotype(genotype, data=args.data, data_dir=args.data_dir, epochs=args.epochs,
                                    batch_size=args.batch_size, device=args.device, layers=args.layers,
                                    channels=args.channels, resolution=args.resolution, limit=args.limit,
                                    seed=args.seed, log=lambda line: console.print(line, highlight=False),
                                    out=args.out_dir, progress=progress)
    except KeyboardInterrupt:
        if args.out_dir is None:
            raise
        print(f"latkit: interrupted; {args.out_dir} keeps every finished epoch, rerun the same command to resume",
              file=sys.stderr)
        return 130
    console.print(f"test accuracy {100 * result['test_accuracy']:.2f}% ({result['params'] / 1e6:.3f} M parameters, "
                  f"{args.epochs} epochs on {args.data})", highlight=False)
    if args.out:
        write_bytes(args.out, (json.dumps(result, indent=2) + "\n").encode())  # its folders made as needed
    return 0


def _numbers(text: str, kind: Callable, flag: str) -> list:
    """``0,1,2`` as a list, each read by ``kind``: a type (the library checks the values) or a bounded argparse
    type (``_number``)."""
    try:
        return [kind(x) for x in text.split(",")]
    except ValueError:
        raise LatkitError(f"{flag} must be comma-separated {kind.__name__}s, got {text!r}") from None
    except argparse.ArgumentTypeError as exc:
        raise LatkitError(f"{flag}: {exc}") from None


def _cmd_sweep(args: argparse.Namespace, console: Console) -> int:
    from latkit.search.pipeline import parse_backends, run_sweep, sweep_table

    _set_threads(args)
    lambdas = _numbers(args.lambdas, float, "--lambdas")
    seeds = _numbers(args.seeds, SEEDS, "--seeds") if args.seeds is not None else [args.seed]
    from latkit.backends.registry import parse_backend_list
    from latkit.predictors.fitting import predictor_for

    targets = parse_backend_list(args.target, "--target", args.target_device)
    if len(targets) > 1:
        raise LatkitError("latkit sweep takes one --target (several targets: latkit search --target A,B)")
    args.target, args.target_device = targets[0]
    predictor = predictor_for(args.predictor or args.target, args.target, args.target_device, args.model,
                              args.force_predictor, differentiable=True)
    train = dict(epochs=args.train_epochs, layers=args.train_layers, channels=args.train_channels,
                 device=args.search_device)
    backends = parse_backends(args.backends)
    runners = {}
    if args.ray is not None:
        from latkit.search.ray_jobs import ray_runners

        runners = dict(zip(("parallel", "one_at_a_time"),
                           ray_runners(args.ray, threads=args.threads or 1, search_device=args.search_device,
                                       measure_devices=[args.target_device] + [d for _, d in backends or []])))
    doc = run_sweep(args.out, target=args.target, target_device=args.target_device, predictor=predictor,
                    lambdas=lambdas, form=args.form, search_options=dict(_search_kwargs(args), target_ms=args.target_ms),
                    train=train,
                    log=lambda line: console.print(line, highlight=False), backends=backends, seeds=seeds,
                    **runners)
    print(sweep_table(doc))
    console.print(f"wrote {Path(args.out) / 'sweep.md'}, sweep.json, pareto.png", highlight=False)
    return 0


BENCH_COMMANDS = ("predictors", "transfer", "model")  # `latkit bench X` with any other X times the model file X


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; each leaf command sets ``handler``."""
    from latkit import campaign
    from latkit.backends.registry import backend_class, list_backends, list_devices
    from latkit.datasets.store import STAT_COLUMNS
    from latkit.predictors import list_predictors
    from latkit.predictors.base import differentiable_kinds
    from latkit.predictors.recommend import AUTO
    from latkit.search.data import DATASETS
    from latkit.search import pipeline
    from latkit.search.penalty import COMBINE, FORMS
    from latkit.selection import METHODS

    differentiable = [AUTO] + differentiable_kinds()
    kinds = [AUTO] + list_predictors()
    auto_help = f"{AUTO} (the default): the kind recommended for the target (latkit recommend)"
    devices = list_devices()

    parser = _Parser(prog="latkit", description="latency toolkit for latency-aware DARTS")
    parser.add_argument("--version", action="version", version=f"latkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    space = sub.add_parser("space", help="the DARTS search space")
    space_sub = space.add_subparsers(dest="space_command", metavar="SUBCOMMAND", required=True)
    p = space_sub.add_parser("sample", help="print sampled genotypes (deterministic in seed and index)")
    p.add_argument("--count", type=COUNT, default=10)
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--start", type=COUNT, default=0, help="first sample index (default 0)")
    p.add_argument("--json", action="store_true", help="JSON lines instead of genotype strings")
    p.set_defaults(handler=_cmd_space_sample)
    p = space_sub.add_parser("show", help="parameters, MACs and ops of a genotype")
    p.add_argument("genotype", help="genotype string, JSON or published name (DARTS_V1, DARTS_V2, PC_DARTS)")
    _add_net_args(p)
    p.set_defaults(handler=_cmd_space_show)

    p = sub.add_parser("export", help="write a genotype's evaluation network as ONNX")
    p.add_argument("genotype", help="genotype string, JSON or published name")
    p.add_argument("--out", type=PATH, required=True, help="output .onnx path")
    _add_net_args(p)
    p.set_defaults(handler=_cmd_export)

    p = sub.add_parser("backends", help="list backends: available or not and why, versions, device")
    p.set_defaults(handler=_cmd_backends)

    p = sub.add_parser("measure", help="measure sampled architectures on a backend into a latency dataset")
    p.add_argument("--backend", required=True, choices=list_backends())
    p.add_argument("--device", choices=devices, help="default: cpu, or the backend's only device (tensorrt: cuda)")
    _add_backend_option(p)
    p.add_argument("--count", type=COUNT, required=True, help="campaign size: sample indices 0..N-1")
    p.add_argument("--select", default="first", choices=METHODS,
                   help="which N: the first (default), random, or diverse (a design for few-shot transfer fits) "
                        "among the first --pool architectures")
    p.add_argument("--pool", type=POSITIVE_INT, help="candidates for --select (default max(20 N, 1000); at most "
                                                     "100000 for diverse, 10000000 for random)")
    p.add_argument("--seed", type=SEED, default=0, help="sampling campaign seed (default 0)")
    p.add_argument("--shard", type=SHARD, default="1/1",
                   help="measure only indices i with i %% N == K-1 (default 1/1)")
    p.add_argument("--out", type=PATH, help="dataset file (default BACKEND_DEVICE_bB_rR_cC_lL.parquet)")
    p.add_argument("--force", action="store_true",
                   help="append even if the environment fingerprint differs (never another backend, device, backend "
                        "options, network, protocol, seed or sampler)")
    _add_net_args(p)
    _add_protocol_args(p)
    p.add_argument("--pin-cpu", type=COUNT, help="run on this CPU core only (Linux), away from other work")
    p.add_argument("--reference-every", type=COUNT, default=campaign.REFERENCE_EVERY,
                   help="time DARTS_V2 as a sample every K samples: its drift (default %(default)s; 0: never)")
    p.add_argument("--repeat-every", type=COUNT, default=campaign.REPEAT_EVERY, help="re-measure an earlier sample every K (0: never)")
    p.add_argument("--burn-in-s", type=NONNEG_FLOAT, default=0.0,
                   help="before the first architecture, time DARTS_V2 (beside the reference in the duet) for this "
                        "long and throw the timings away (default 0; tried on OpenVINO against the low first "
                        "minutes of a process: no effect found, benchmarks/RESULTS.md)")
    p.add_argument("--retry-errors", action="store_true",
                   help="measure again the sample indices whose only rows are errors (the error rows stay)")
    p.add_argument("--max-failures", type=COUNT, default=campaign.MAX_CONSECUTIVE_FAILURES,
                   help="stop after this many consecutive failed architectures (default %(default)s; 0: never)")
    p.add_argument("--ray", nargs="?", const="auto", metavar="auto|local|ADDRESS",
                   help="measure on a Ray cluster: auto (the one `ray start` runs here; the default), local (a private "
                        "one on this machine) or HOST:PORT; this process keeps the dataset, workers measure")
    p.add_argument("--workers", type=POSITIVE_INT,
                   help="with --ray: measuring slots, one device each (default: one per GPU, or per free CPU)")
    p.add_argument("--builders", type=COUNT, default=0,
                   help="with --ray: builder actors preparing architectures ahead on cores the slots do not use")
    p.add_argument("--ahead", type=POSITIVE_INT, default=2,
                   help="with --builders: architectures kept prepared per slot (default %(default)s)")
    p.set_defaults(handler=_cmd_measure)

    dataset = sub.add_parser("dataset", help="inspect, merge and validate latency datasets")
    dataset_sub = dataset.add_subparsers(dest="dataset_command", metavar="SUBCOMMAND", required=True)
    p = dataset_sub.add_parser("info", help="rows, failures, latency range, noise floor, drift, fingerprint")
    p.add_argument("file", type=PATH)
    p.add_argument("--stat", default="min_ms", choices=STAT_COLUMNS, help="statistic to summarise (default %(default)s)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--datasheet", action="store_true", help="print a Markdown datasheet")
    p.add_argument("--command-line", help="with --datasheet: the command that reproduces the file")
    p.add_argument("--notes", help="with --datasheet: free text on the measuring conditions")
    p.set_defaults(handler=_cmd_dataset_info)
    p = dataset_sub.add_parser("merge", help="join shards (refuses different fingerprints unless --force)")
    p.add_argument("files", nargs="+", type=PATH)
    p.add_argument("--out", type=PATH, required=True)
    p.add_argument("--force", action="store_true",
                   help="merge even if the environment fingerprints differ (never another backend, device, backend "
                        "options, network, protocol, seed or sampler)")
    p.add_argument("--rebase", action="store_true",
                   help="merge files whose frozen baselines differ (different units): the merged file's baseline "
                        "from all its rows")
    p.set_defaults(handler=_cmd_dataset_merge)
    p = dataset_sub.add_parser("rebase", help="freeze a duet file's baseline (its unit) from all its rows now")
    p.add_argument("file", type=PATH)
    p.set_defaults(handler=_cmd_dataset_rebase)
    p = dataset_sub.add_parser("validate", help="check a dataset file; a corrupt or foreign file is an error")
    p.add_argument("file", type=PATH)
    p.set_defaults(handler=_cmd_dataset_validate)

    from latkit.predictors.fitting import DEFAULT_STAT, LATENCY_STATS

    p = sub.add_parser("fit", help="fit a latency predictor on a dataset and print its held-out metrics")
    p.add_argument("--dataset", type=PATH, required=True)
    p.add_argument("--model", default=AUTO, choices=kinds, help=f"predictor kind; {auto_help}")
    p.add_argument("--out", type=PATH, required=True, help="directory for the saved predictor")
    p.add_argument("--stat", default=DEFAULT_STAT, choices=LATENCY_STATS,
                   help="latency statistic to learn (default %(default)s)")
    p.add_argument("--train-size", type=POSITIVE_INT, help="use only this many training architectures")
    p.add_argument("--prior", action="append", metavar="BACKEND[/DEVICE]|DIR",
                   help="few-shot: transfer from this predictor (repeatable); the dataset may hold only a few rows")
    p.add_argument("--prior-model", default=AUTO, choices=kinds,
                   help=f"which embedded predictor, when --prior is a backend; {auto_help}")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--raw", action="store_true",
                   help="learn the raw latency of a duet dataset (default: normalised by the reference timed beside "
                        "each architecture, so host slowdowns cancel)")
    p.set_defaults(handler=_cmd_fit)

    p = sub.add_parser("predict", help="predicted latency (ms) of a genotype")
    p.add_argument("--predictor", type=PATH, required=True,
                   help="saved predictor directory, or a backend for its default")
    p.add_argument("genotype")
    p.add_argument("--device", default="cpu", choices=devices)
    p.add_argument("--model", default=AUTO, choices=kinds,
                   help=f"which embedded predictor, when --predictor is a backend; {auto_help}")
    p.add_argument("--backend", choices=list_backends(),
                   help="refuse a predictor fitted for another backend or device")
    p.add_argument("--force-predictor", action="store_true", help="with --backend: only warn")
    p.add_argument("--no-interval", action="store_true", help="print the prediction alone, without its interval")
    p.add_argument("--calibrate", action="store_true",
                   help="time the reference (DARTS_V2) on this machine now and scale the prediction to it: a predictor "
                        "from a duet dataset predicts ms of the dataset's host on its fast days")
    p.set_defaults(handler=_cmd_predict)

    p = sub.add_parser("recommend", help="which predictor kind to use on each backend: the table every --model "
                                         f"{AUTO} reads")
    p.add_argument("--write", action="store_true",
                   help="regenerate the shipped table from the shipped datasets (every kind fitted and scored)")
    p.add_argument("--dataset", type=PATH, action="append", help="score these datasets instead (repeatable)")
    p.add_argument("--out", type=PATH, help="write the table (JSON) here")
    p.set_defaults(handler=_cmd_recommend)

    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench_command", metavar="SUBCOMMAND", required=True)
    p = bench_sub.add_parser("predictors", help="every predictor x training size on a fixed held-out split")
    p.add_argument("--dataset", type=PATH, action="append",
                   help="dataset file (repeatable; default: the shipped ones)")
    p.add_argument("--models", help=f"comma-separated subset of {','.join(list_predictors())}")
    p.add_argument("--sizes", default="250,500,1000,2000,all", help="training sizes: integers >= 2 or 'all'")
    p.add_argument("--seeds", default="0", help="fit seeds (training subset and fit), e.g. 0,1,2: the fit's spread")
    p.add_argument("--stat", default=DEFAULT_STAT, choices=LATENCY_STATS)
    p.add_argument("--out", type=PATH, help="directory for the Markdown table, JSON rows and PNG plots")
    p.set_defaults(handler=_cmd_bench_predictors)
    p = bench_sub.add_parser("transfer", help="few-shot transfer between every pair of datasets, N = 5..100")
    p.add_argument("--dataset", type=PATH, action="append",
                   help="dataset file (repeatable; default: the shipped ones)")
    p.add_argument("--sizes", default="5,10,20,50,100")
    p.add_argument("--draws", type=POSITIVE_INT, default=20, help="random draws per N (default %(default)s)")
    p.add_argument("--prior-model", default=AUTO, choices=kinds,
                   help=f"the kind of each dataset's full-data predictor, the priors; {auto_help}")
    p.add_argument("--out", type=PATH, help="directory for the Markdown table, JSON rows and PNG plots")
    p.set_defaults(handler=_cmd_bench_transfer)
    p = bench_sub.add_parser("model", help="time your own ONNX model (also: latkit bench MODEL.onnx)")
    p.add_argument("model", type=PATH, help="an ONNX file with one float32 input")
    p.add_argument("--backend", required=True, choices=[n for n in list_backends() if backend_class(n).reads == "onnx"])
    p.add_argument("--device", choices=devices, help="default: cpu, or the backend's only device (tensorrt: cuda)")
    _add_backend_option(p)
    p.add_argument("--batch", type=POSITIVE_INT, help="size of a dynamic first (batch) dimension")
    p.add_argument("--out", type=PATH,
                   help="append the row to this Parquet file (latkit's dataset format, kind 'model')")
    p.add_argument("--reference", metavar="NAME|MODEL.onnx",
                   help="time the model beside this reference, run for run (a genotype or DARTS_V2-style name built at "
                        "the model's batch and resolution, or an ONNX file), and print the ratio")
    _add_protocol_args(p, campaign=False)
    p.set_defaults(handler=_cmd_bench_model)

    def search_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--target", required=True, metavar="|".join(list_backends()),
                       help="backend to deploy on: its predictor is the latency penalty (search: several, "
                            "comma-separated, each as BACKEND or BACKEND/DEVICE)")
        p.add_argument("--target-device", default="cpu", choices=devices,
                       help="device the target runs on (default %(default)s)")
        p.add_argument("--search-device", default="cpu", choices=devices,
                       help="device the search and training run on (default %(default)s)")
        p.add_argument("--predictor", type=PATH, help="saved predictor directory (default: the target's embedded one)")
        p.add_argument("--force-predictor", action="store_true",
                       help="use a predictor fitted for another backend or device")
        p.add_argument("--model", default=AUTO, choices=differentiable,
                       help=f"the embedded predictor's kind; {AUTO} (the default): the differentiable kind "
                            "recommended for the target (latkit recommend)")
        p.add_argument("--form", default="additive", choices=FORMS)
        p.add_argument("--target-ms", type=POSITIVE_FLOAT, help="target latency T for --form relative")
        p.add_argument("--epochs", type=POSITIVE_INT, default=pipeline.DEFAULT_EPOCHS,
                       help="search epochs (default %(default)s; DARTS: 50)")
        p.add_argument("--order", type=int, default=1, choices=[1, 2])
        p.add_argument("--layers", type=POSITIVE_INT, default=8, help="supernet cells (default %(default)s)")
        p.add_argument("--channels", type=POSITIVE_INT, default=16, help="supernet channels (default %(default)s)")
        p.add_argument("--threads", type=POSITIVE_INT, help="torch CPU threads")
        p.add_argument("--max-skip", type=COUNT, metavar="K",
                       help="at most K skip connections in the derived normal cell (P-DARTS' rule against the "
                            "skip-connection collapse a latency penalty feeds; P-DARTS uses 2)")
        p.add_argument("--max-free", type=_number(int, -1, MAX_COUNT), default=pipeline.DEFAULT_MAX_FREE, metavar="K",
                       help="at most K parameter-free ops (pools, skips) in the derived normal cell, the strongest "
                            "kept (default %(default)s; -1: no bound): the latency penalty rewards any op without "
                            "weights, so bounding skips alone lets pools take their places")
        p.add_argument("--beta-decay", type=NONNEG_FLOAT, default=0.0, metavar="W",
                       help="beta-DARTS' regulariser on the alphas during the search, its weight rising linearly "
                            "to W (default %(default)s: off)")
        data_args(p, batch=64)

    def data_args(p: argparse.ArgumentParser, batch: int) -> None:
        p.add_argument("--data", default="digits", choices=DATASETS)
        p.add_argument("--data-dir", type=PATH, help="CIFAR-10 python-version folder")
        p.add_argument("--resolution", type=POSITIVE_INT, help="input size (default 16 for digits, 32 for CIFAR-10)")
        p.add_argument("--limit", type=POSITIVE_INT, help="use at most this many images per split")
        p.add_argument("--batch-size", type=POSITIVE_INT, default=batch)
        p.add_argument("--seed", type=SEED, default=0)

    p = sub.add_parser("search", help="latency-aware DARTS for a target backend")
    search_args(p)
    p.add_argument("--lambda", dest="lam", type=NONNEG_FLOAT, default=pipeline.DEFAULT_LAMBDA,
                   help="latency weight (default %(default)s; 0: plain DARTS)")
    p.add_argument("--combine", default="sum", choices=COMBINE,
                   help="several targets: penalise the sum or the worst of their latency / DARTS_V2 ratios "
                        "(default %(default)s)")
    p.add_argument("--no-measure", action="store_true", help="skip measuring the result on the target")
    p.add_argument("--out", type=PATH, default=pipeline.DEFAULT_OUT, help="output directory (default %(default)s)")
    p.set_defaults(handler=_cmd_search)

    p = sub.add_parser("train", help="train a genotype's evaluation network and report test accuracy")
    p.add_argument("genotype", help="genotype string, JSON, published name or a search's result.json")
    p.add_argument("--epochs", type=POSITIVE_INT, default=10)
    p.add_argument("--layers", type=POSITIVE_INT, default=8)
    p.add_argument("--channels", type=POSITIVE_INT, default=16)
    p.add_argument("--device", default="cpu", choices=devices)
    p.add_argument("--threads", type=POSITIVE_INT)
    p.add_argument("--out", type=PATH, help="write the result JSON here")
    p.add_argument("--out-dir", type=PATH, metavar="DIR",
                   help="checkpoint every epoch in DIR; rerunning the same command resumes after the last finished "
                        "epoch")
    data_args(p, batch=96)
    p.set_defaults(handler=_cmd_train)

    p = sub.add_parser("sweep", help="a search per lambda, trained and measured: the accuracy/latency front")
    search_args(p)
    p.add_argument("--lambdas", default="0,0.5,2", help="latency weights (default %(default)s)")
    p.add_argument("--backends", help="measure on these backends, e.g. torch,onnxruntime,openvino/cpu (default: every "
                                      "backend available here; the target always)")
    p.add_argument("--seeds", help="search and train every lambda with each seed, e.g. 0,1,2: the table and the "
                                   "plot give mean +- std over seeds (default: --seed)")
    p.add_argument("--train-epochs", type=POSITIVE_INT, default=10)
    p.add_argument("--train-layers", type=POSITIVE_INT, default=8)
    p.add_argument("--train-channels", type=POSITIVE_INT, default=16)
    p.add_argument("--out", type=PATH, default="runs/sweep")
    p.add_argument("--ray", nargs="?", const="auto", metavar="auto|local|ADDRESS",
                   help="run each lambda's search and each training as a Ray task (auto: the cluster `ray start` runs "
                        "here; local: a private one); the measurements run one at a time on a claimed core")
    p.set_defaults(handler=_cmd_sweep)
    return parser


def _one_line_warnings(show: Callable[..., None]) -> Callable[..., None]:
    """A ``warnings.showwarning`` printing latkit's own warnings as one line on stderr, others by ``show``."""
    def shown(message: Warning | str, category: type[Warning], *rest: Any, **kw: Any) -> None:
        if issubclass(category, LatkitWarning):
            print(f"latkit: warning: {message}", file=sys.stderr)
        else:
            show(message, category, *rest, **kw)
    return shown


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI in-process; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"] and len(argv) > 1 and argv[1] not in BENCH_COMMANDS and not argv[1].startswith("-"):
        argv.insert(1, "model")  # latkit bench MODEL.onnx (any path: a file that is not ONNX gets its own error)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return int(exc.code or 0)
    try:
        # long paths stay on one line; user text (paths, genotypes) is printed as it is, never read as markup
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warnings(warnings.showwarning)
            return args.handler(args, Console(soft_wrap=True, markup=False, highlight=False))
    except LatkitError as exc:
        print(f"latkit: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path that cannot be read or written: unwritable --out, a full disk, ...
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"latkit: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("latkit: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
