"""The ``latkit`` command line. ``main(argv)`` runs in-process and returns the exit code (testable).

A ``LatkitError`` is printed as one line on stderr with exit code 2; argparse usage errors also exit 2.
"""
from __future__ import annotations

import argparse
import json
import sys
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; each leaf command sets ``handler``."""
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
