"""Issue 34's probe of bad input and faults: every case is one ``latkit`` command run as a user runs it (a fresh
``python -m latkit`` process in a directory of its own), judged by its exit status and its stderr.

Usage: python -m benchmarks.probe [--quick] [--out benchmarks/probe.md] [--seed N] [--only TEXT]

A refused case must exit 2 with exactly one line on stderr (``latkit: error: ...``), no traceback, and leave every
file as it was (no lock, temporary or partial file; fixtures unchanged); its wall time (interpreter start-up
included) is reported against the 1 s target, never failed on. A case that works must exit 0 printing nothing on
stderr but ``latkit: warning:`` lines. The faults (kill -9 at random points, kill -9 in the final write, SIGINT,
SIGTERM, two writers by several paths, a full disk) run small onnxruntime campaigns and check that no row written
before is lost or duplicated; ``--quick`` skips them. Full-disk and read-only cases mount a small tmpfs (root); where
that is impossible they are reported as not run. Run it pinned (``taskset -c 0``): every process inherits the pin.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence, Union

REFUSED, WORKS, WARNS, EITHER, EXACT = "refused", "works", "warns", "either", "exact"
TINY = ["--layers", "3", "--channels", "4", "--resolution", "8", "--repeats", "3", "--warmup-runs", "1",
        "--warmup-ms", "0"]
CAMPAIGN = ["measure", "--backend", "onnxruntime", *TINY, "--reference-every", "10", "--repeat-every", "10"]
TIMEOUT = 120.0  # seconds a case may run before it is killed (and failed)
HUGE = "99999999999999999999"  # past every bound (2**63 - 1 included)
BAD = b"/\xff"  # a file name that is not UTF-8, as the shell passes $'\xff'
V2 = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
      "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=range(2, 6), "
      "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), "
      "('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=range(2, 6))")
Arg = Union[str, bytes]


class Skip(Exception):
    """A case this machine cannot set up (no tmpfs mount): reported as not run."""


@dataclass
class Ctx:
    """The probe's temporary root, its fixtures (``fx``), the random draw of the faults and the mounts to undo."""

    root: Path
    rng: random.Random = field(default_factory=random.Random)
    mounts: list[Path] = field(default_factory=list)

    @property
    def fx(self) -> Path:
        return self.root / "fx"


@dataclass
class Run:
    """One finished (or killed) command."""

    rc: int | None
    out: str
    err: str
    seconds: float


@dataclass(frozen=True)
class Case:
    """A command and what it must do. ``argv``: a string (shlex-split; ``{fx}`` is the fixtures folder, ``{dir}``
    the case's own) or a callable ``(ctx, dir) -> argv`` that sets up its files first. ``early``: refused before
    anything is measured or trained (its time is held against the 1 s target). ``match``: text the output holds.
    ``check``: more problems, from the finished run."""

    name: str
    category: str
    argv: str | Callable[[Ctx, Path], Sequence[Arg]]
    expect: str = REFUSED
    early: bool = True
    match: str = ""
    check: Callable[[Ctx, Path, Run], list[str]] | None = None


@dataclass(frozen=True)
class Fault:
    """A scripted fault around small campaigns: ``run(ctx, dir)`` returns (problems, what happened)."""

    name: str
    category: str
    run: Callable[[Ctx, Path], tuple[list[str], str]]


@dataclass
class Outcome:
    """What a case or fault did."""

    name: str
    category: str
    expect: str
    rc: int | None
    seconds: float
    early: bool
    message: str
    problems: list[str]
    ran: bool = True
    err_lines: int = 0  # lines on stderr

    @property
    def passed(self) -> bool:
        return self.ran and not self.problems


# --- running commands -------------------------------------------------------------------------------------------

def latkit_argv(argv: Sequence[Arg]) -> list[Arg]:
    return [sys.executable, "-m", "latkit", *argv]


def run_latkit(argv: Sequence[Arg], cwd: Path, timeout: float = TIMEOUT) -> Run:
    """``python -m latkit ARGV`` in ``cwd``; its wall time includes the interpreter's start-up, as a user's does."""
    start = time.perf_counter()
    try:
        p = subprocess.run(latkit_argv(argv), cwd=cwd, capture_output=True, timeout=timeout)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as exc:
        rc, out, err = None, exc.stdout or b"", exc.stderr or b""
    return Run(rc, out.decode(errors="replace"), err.decode(errors="replace"), time.perf_counter() - start)


def snapshot(*dirs: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``dirs``: (size, mtime) by path, to tell what a command changed."""
    seen = {}
    for d in dirs:
        for p in [d, *d.rglob("*")]:
            st = p.lstat()
            seen[str(p)] = (st.st_size if p.is_file() else -1, st.st_mtime_ns)
    return seen


def changes(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> list[str]:
    made = sorted(set(after) - set(before))
    gone = sorted(set(before) - set(after))
    changed = sorted(p for p in set(before) & set(after) if before[p] != after[p] and before[p][0] != -1)
    return ([f"left {', '.join(Path(p).name for p in made)}"] if made else []) + \
           ([f"removed {', '.join(Path(p).name for p in gone)}"] if gone else []) + \
           ([f"changed {', '.join(Path(p).name for p in changed)}"] if changed else [])


def judge(expect: str, run: Run, match: str = "") -> list[str]:
    """What is wrong with ``run`` for a case expecting ``expect``."""
    if run.rc is None:
        return [f"still running after {TIMEOUT:.0f} s (killed)"]
    problems = ["a traceback"] if "Traceback" in run.err + run.out else []
    lines = run.err.splitlines()
    if expect == REFUSED or (expect == EITHER and run.rc != 0):
        if run.rc != 2:
            problems.append(f"exit {run.rc}, not 2")
        if len(lines) != 1 or not run.err.endswith("\n") or not run.err.startswith("latkit: error: "):
            problems.append(f"{len(lines)} stderr lines, not one 'latkit: error:' line")
        if match and match not in run.err:
            problems.append(f"no {match!r} in the error")
    else:
        if run.rc != 0:
            problems.append(f"exit {run.rc}, not 0")
        other = [line for line in lines if not line.startswith("latkit: warning: ")]
        if other:
            problems.append(f"stderr beside latkit warnings: {other[0][:100]!r}")
        if expect == WARNS and len(lines) != 1:
            problems.append(f"{len(lines)} warning lines, not one")
        if match and match not in run.out + run.err:
            problems.append(f"no {match!r} in the output")
    return problems


def argv_of(case: Case, ctx: Ctx, d: Path) -> list[Arg]:
    if callable(case.argv):
        return list(case.argv(ctx, d))
    return [a.replace("{fx}", str(ctx.fx)).replace("{dir}", str(d)) for a in shlex.split(case.argv)]


def run_case(case: Case, ctx: Ctx, d: Path) -> Outcome:
    """Set the case up in the empty folder ``d``, run it there and judge it."""
    d.mkdir(parents=True, exist_ok=True)
    try:
        argv = argv_of(case, ctx, d)
    except Skip as exc:
        return Outcome(case.name, case.category, case.expect, None, 0.0, case.early, f"not run: {exc}", [], ran=False)
    watched = [p for p in (ctx.fx, d) if p.exists()]
    before = snapshot(*watched)
    run = run_latkit(argv, d)
    problems = judge(case.expect, run, case.match)
    if case.expect == REFUSED or (case.expect == EITHER and run.rc != 0):
        problems += changes(before, snapshot(*watched))
    if case.check is not None and run.rc is not None:
        problems += case.check(ctx, d, run)
    message = (run.err.splitlines() or run.out.splitlines() or [""])[0 if run.rc else -1]
    return Outcome(case.name, case.category, case.expect, run.rc, run.seconds, case.early, message, problems,
                   err_lines=len(run.err.splitlines()))


# --- file systems -----------------------------------------------------------------------------------------------

def mount_tmpfs(ctx: Ctx, where: Path, size: str) -> Path:
    """A small tmpfs at ``where`` (undone at the end); Skip where this process may not mount."""
    where.mkdir(parents=True, exist_ok=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True,
                       text=True)
    if p.returncode:
        raise Skip(f"cannot mount a tmpfs ({p.stderr.strip() or p.returncode})")
    ctx.mounts.append(where)
    return where


def remount(where: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(where)], check=True, capture_output=True)


def unmount_all(ctx: Ctx) -> None:
    for where in reversed(ctx.mounts):
        subprocess.run(["umount", "-l", str(where)], capture_output=True)
    ctx.mounts.clear()


def read_only(ctx: Ctx, d: Path, *files: str) -> Path:
    """A read-only folder in ``d`` holding copies of the fixtures ``files`` (a tmpfs remounted read-only: root
    writes through a chmod)."""
    where = mount_tmpfs(ctx, d / "ro", "1m")
    for name in files:
        shutil.copy(ctx.fx / name, where / name)
    remount(where, "ro")
    return where


def full_disk(ctx: Ctx, d: Path, *files: str, size: str = "256k") -> Path:
    """A tmpfs in ``d`` holding copies of ``files``, then filled to the last byte."""
    where = mount_tmpfs(ctx, d / "full", size)
    for name in files:
        shutil.copy(ctx.fx / name, where / name)
    fill(where)
    return where


def fill(where: Path) -> None:
    """Write a filler file in ``where`` until its file system is full."""
    fd = os.open(where / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


def not_utf8(d: Path, name: str) -> bytes:
    return os.fsencode(d) + BAD + name.encode()


# --- fixtures ---------------------------------------------------------------------------------------------------

def _onnx(path: Path, inputs: list[tuple[str, int, list]]) -> None:
    """A one-node ONNX model (Identity, or Add of two inputs) with these (name, element type, shape) inputs."""
    import onnx
    from onnx import helper

    values = [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs]
    node = helper.make_node("Add" if len(inputs) == 2 else "Identity", [n for n, _, _ in inputs], ["y"])
    out = helper.make_tensor_value_info("y", inputs[0][1], inputs[0][2])
    graph = helper.make_graph([node], "probe", values, [out])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def build_fixtures(ctx: Ctx) -> list[str]:
    """The files the cases read, in ``ctx.fx``: a measured dataset and broken copies of it, predictors, ONNX models.
    Returns notes (start-up time)."""
    import onnx
    import pyarrow.compute as pc

    from latkit.datasets.store import load, write
    from latkit.network import NetConfig, build
    from latkit.onnx_export import export
    from latkit.predictors import fit_dataset
    from latkit.space import PUBLISHED

    fx = ctx.fx
    fx.mkdir(parents=True)
    run = run_latkit([*CAMPAIGN, "--count", "24", "--out", str(fx / "ds.parquet")], fx)
    if run.rc != 0:
        raise SystemExit(f"the fixture campaign failed: {run.err.strip()}")
    ds = load(fx / "ds.parquet")
    h, t = ds.header, ds.table
    first_run = next(iter(h["runs"]))
    config = {k: v for k, v in h["config"].items() if k != "in_channels"}
    headers = {"no_in_channels": dict(h, config=config), "run_list": dict(h, runs={first_run: ["x"]}),
               "runs_string": dict(h, runs="r"), "layers_string": dict(h, config=dict(h["config"], layers="3")),
               "no_format": {k: v for k, v in h.items() if k != "format"}, "torch_header": dict(h, backend="torch"),
               "seed_string": dict(h, seed="0")}
    for name, header in headers.items():
        write(fx / f"{name}.parquet", header, t)
    for n, name in ((3, "three"), (5, "five")):
        write(fx / f"{name}.parquet", h, t.filter(pc.equal(t["kind"], "sample")).slice(0, n))
    data = (fx / "ds.parquet").read_bytes()
    (fx / "trunc.parquet").write_bytes(data[: len(data) // 2])
    (fx / "empty.parquet").write_bytes(b"")
    (fx / "text.parquet").write_text("hello\n")
    (fx / "dir.parquet").mkdir()
    (fx / "file").write_text("a file, not a folder\n")
    (fx / "result42.json").write_text(json.dumps({"genotype": 42}))
    (fx / "notes").mkdir()
    (fx / "notes" / "mine.txt").write_text("mine\n")
    # predictors: two saves of one kind, and directories mixing their files
    fit_dataset(fx / "ds.parquet", "additive")[0].save(fx / "pred")
    fit_dataset(fx / "ds.parquet", "additive", train_size=8, seed=1)[0].save(fx / "pred_b")
    for name in ("pred_mixed", "pred_no_weights", "pred_list", "pred_bad_json"):
        shutil.copytree(fx / "pred", fx / name)
    shutil.copy(fx / "pred_b" / "weights.safetensors", fx / "pred_mixed" / "weights.safetensors")
    (fx / "pred_no_weights" / "weights.safetensors").unlink()
    meta = json.loads((fx / "pred" / "predictor.json").read_text())
    (fx / "pred_list" / "predictor.json").write_text(json.dumps([meta]))
    (fx / "pred_bad_json" / "predictor.json").write_text("{")
    pretrained = Path(__import__("latkit.predictors", fromlist=["x"]).__file__).parent / "pretrained"
    shutil.copytree(pretrained / "onnxruntime_cpu_b1_r32_c36_l20_groups", fx / "ort_groups_torch_weights")
    shutil.copy(pretrained / "torch_cpu_b1_r32_c36_l20_groups" / "weights.safetensors",
                fx / "ort_groups_torch_weights" / "weights.safetensors")  # issue 34's defect 2, as it was found
    # ONNX models
    f32, i64 = onnx.TensorProto.FLOAT, onnx.TensorProto.INT64
    _onnx(fx / "scalar.onnx", [("x", f32, [])])
    _onnx(fx / "int_input.onnx", [("x", i64, [1, 4])])
    _onnx(fx / "two_inputs.onnx", [("x", f32, [1, 4]), ("z", f32, [1, 4])])
    _onnx(fx / "dynamic.onnx", [("x", f32, [1, "h"])])
    export(build(PUBLISHED["DARTS_V2"], NetConfig(layers=3, channels=4, resolution=8)), fx / "tiny.onnx")
    startup = [run_latkit(["--version"], fx).seconds for _ in range(3)]
    git = (lambda *a: subprocess.run(["git", *a], capture_output=True, text=True,  # noqa: E731
                                     cwd=Path(__file__).parent).stdout.strip())
    dirty = len(git("status", "--porcelain", "--untracked-files=no").splitlines())
    head = (git("rev-parse", "--short", "HEAD") or "unknown") + (f" + uncommitted changes to {dirty} files"
                                                                  if dirty else "")
    return [f"start-up alone (`python -m latkit --version`, 3 runs): median {statistics.median(startup):.2f} s",
            f"latkit {__import__('latkit').__version__} at commit {head}, Python {sys.version.split()[0]}"]


# --- the cases --------------------------------------------------------------------------------------------------

def _option_cases() -> list[Case]:
    """One bad value for every integer and float option of every command (an option shared by several commands,
    same help, probed once): integers alternate below the bound (0 or -1) and past every bound; floats cycle nan,
    inf, below the bound."""
    import argparse

    from latkit.cli import build_parser

    def walk(p: argparse.ArgumentParser, path: list[str]):
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sub in a.choices.items():
                    yield from walk(sub, path + [name])
            elif a.option_strings and getattr(a.type, "__name__", "") in ("int", "float"):
                yield path, a

    def accepts(a: argparse.Action, text: str) -> bool:
        try:
            a.type(text)
            return a.choices is None or a.type(text) in a.choices
        except (argparse.ArgumentTypeError, ValueError):
            return False

    cases, seen, ints, floats = [], set(), 0, 0
    for path, a in walk(build_parser(), []):
        opt = a.option_strings[-1]
        if (opt, a.help, a.type.__name__) in seen:
            continue
        seen.add((opt, a.help, a.type.__name__))
        if a.type.__name__ == "int":
            below = next(v for v in ("0", "-1", "-2", "3") if not accepts(a, v))
            value = below if ints % 2 == 0 else HUGE
            ints += 1
            category = "integer option"
        else:
            value = ("nan", "inf", "-1")[floats % 3]
            floats += 1
            category = "float option"
        cases.append(Case(f"{' '.join(path)} {opt} {value}", category, shlex.join([*path, opt, value])))
    return cases


def _no_nan(ctx: Ctx, d: Path, run: Run) -> list[str]:
    bad = [w for w in ("nan", "RuntimeWarning", "SciPy", "scipy") if re.search(rf"\b{w}\b", run.out + run.err)]
    return [f"prints {', '.join(bad)}"] if bad else []


def _keeps_rows(name: str) -> Callable[[Ctx, Path, Run], list[str]]:
    """A check: the copy of the fixture dataset in the case's folder still holds every fixture row, once."""
    def check(ctx: Ctx, d: Path, run: Run) -> list[str]:
        before, after = rows(ctx.fx / "ds.parquet"), rows(d / name)
        lost, dup = before - after, [k for k, n in after.items() if n > 1]
        return ([f"{sum(lost.values())} rows lost"] if lost else []) + ([f"{len(dup)} rows twice"] if dup else [])
    return check


def _copy(name: str, *argv: str) -> Callable[[Ctx, Path], list[Arg]]:
    """Argv on a copy of fixture ``name`` in the case's folder (``{copy}`` in ``argv``)."""
    def setup(ctx: Ctx, d: Path) -> list[Arg]:
        shutil.copy(ctx.fx / name, d / name)
        return [a.replace("{copy}", str(d / name)).replace("{fx}", str(ctx.fx)) for a in argv]
    return setup


def _on(where: Callable[..., Path], files: tuple[str, ...], *argv: str) -> Callable[[Ctx, Path], list[Arg]]:
    """Argv with ``{at}`` a read-only or full folder holding copies of ``files``."""
    def setup(ctx: Ctx, d: Path) -> list[Arg]:
        at = where(ctx, d, *files)
        return [a.replace("{at}", str(at)).replace("{fx}", str(ctx.fx)) for a in argv]
    return setup


def _bad_name(*argv: str) -> Callable[[Ctx, Path], list[Arg]]:
    """Argv with ``{bad}`` a path in the case's folder whose name is not UTF-8."""
    def setup(ctx: Ctx, d: Path) -> list[Arg]:
        return [not_utf8(d, a.removeprefix("{bad}")) if a.startswith("{bad}") else a.replace("{fx}", str(ctx.fx))
                for a in argv]
    return setup


def _link_to_nothing(d: Path, *argv: str) -> list[Arg]:
    """``argv`` and then a symlink in ``d`` to a path that does not exist."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "link").symlink_to(d / "gone")
    return [*argv, str(d / "link")]


def cases() -> list[Case]:
    """Every bad-input case, and the valid commands beside them (which must work)."""
    ms = "measure --backend onnxruntime --count 2 " + shlex.join(TINY)
    G, F, H, O, E = "genotype", "missing or wrong file", "dataset header", "output path", "empty string"
    R, D, P, X, L = "read-only directory", "full disk", "predictor directory", "ONNX model", "list option"
    B, W = "command, backend, device", "works"
    c = [
        # commands, backends, devices
        Case("unknown command", B, "frobnicate"),
        Case("no command", B, ""),
        Case("unknown backend", B, "measure --backend nope --count 1", match="invalid choice: 'nope'"),
        Case("unknown device", B, "measure --backend onnxruntime --device tpu --count 1"),
        Case("device the backend lacks (onnxruntime/cuda)", B, "measure --backend onnxruntime --device cuda --count 1"),
        Case("backend not installed (tensorrt)", B, "measure --backend tensorrt --count 1"),
        Case("backend option without =", B, ms + " -O fast"),
        Case("unknown backend option", B, ms + " -O nope=1"),
        Case("--workers without --ray", B, ms + " --workers 2"),
        Case("--pin-cpu with --ray", B, ms + " --ray local --pin-cpu 0"),
        Case("--select unknown", B, ms + " --select best"),
        Case("bench model --backend torch (reads no ONNX)", B, "bench {fx}/tiny.onnx --backend torch"),
        # genotypes
        Case("unknown genotype name", G, "space show NOPE"),
        Case("malformed genotype string", G, "space show \"Genotype(normal=[('x', 0)]\""),
        Case("unknown op", G, shlex.join(["space", "show", V2.replace("dil_conv_3x3", "dil_conv_9x9")])),
        Case("edge input out of range", G, shlex.join(["space", "show", V2.replace("('dil_conv_3x3', 2)",
                                                                                   "('dil_conv_3x3', 7)")])),
        Case("seven edges in a cell", G, shlex.join(["space", "show", V2.replace("('sep_conv_3x3', 0), ", "", 1)])),
        Case("genotype JSON without cells", G, "export '{}' --out m.onnx"),
        Case("genotype JSON cut short", G, "predict --predictor onnxruntime '{\"normal\": ['"),
        Case("genotype not UTF-8", G, lambda ctx, d: ["space", "show", b"\xff"]),
        Case("train a result.json whose genotype is 42", G, "train {fx}/result42.json --epochs 1"),
        # missing or wrong files
        Case("info on a missing file", F, "dataset info {fx}/none.parquet"),
        Case("info on a directory", F, "dataset info {fx}/dir.parquet"),
        Case("info on a text file", F, "dataset info {fx}/text.parquet"),
        Case("validate an empty file", F, "dataset validate {fx}/empty.parquet"),
        Case("validate a truncated Parquet", F, "dataset validate {fx}/trunc.parquet"),
        Case("rebase a text file", F, "dataset rebase {fx}/text.parquet"),
        Case("merge a missing input", F, "dataset merge {fx}/ds.parquet {fx}/none.parquet --out m.parquet"),
        Case("fit a directory", F, "fit --dataset {fx}/dir.parquet --out p"),
        Case("bench predictors on a text file", F, "bench predictors --dataset {fx}/text.parquet"),
        Case("bench transfer on a missing file", F, "bench transfer --dataset {fx}/ds.parquet --dataset "
                                                    "{fx}/none.parquet"),
        Case("recommend on a missing dataset", F, "recommend --dataset {fx}/none.parquet"),
        Case("measure into a text file", F, ms + " --out {fx}/text.parquet"),
        Case("measure into a truncated Parquet", F, ms + " --out {fx}/trunc.parquet"),
        Case("measure into a dataset of another protocol", F, _copy("ds.parquet", *shlex.split(ms), "--repeats", "5",
                                                                    "--out", "{copy}")),
        Case("dataset info on a non-UTF-8 missing name", F, _bad_name("dataset", "info", "{bad}.parquet")),
        # dataset headers (issue 34's defect 7 and neighbours)
        Case("validate: config without in_channels", H, "dataset validate {fx}/no_in_channels.parquet", WORKS),
        Case("info: config without in_channels", H, "dataset info {fx}/no_in_channels.parquet", WORKS),
        Case("validate: a run entry not a mapping", H, "dataset validate {fx}/run_list.parquet", match="not a dict"),
        Case("info: a run entry not a mapping", H, "dataset info {fx}/run_list.parquet", match="not a dict"),
        Case("info --datasheet: runs as a string", H, "dataset info --datasheet {fx}/runs_string.parquet"),
        Case("validate: runs as a string", H, "dataset validate {fx}/runs_string.parquet"),
        Case("info: config layers a string", H, "dataset info {fx}/layers_string.parquet"),
        Case("validate: seed a string", H, "dataset validate {fx}/seed_string.parquet"),
        Case("validate: no format key", H, "dataset validate {fx}/no_format.parquet"),
        Case("merge two backends", H, "dataset merge {fx}/ds.parquet {fx}/torch_header.parquet --out m.parquet"),
        # empty strings
        Case("--count ''", E, "measure --backend onnxruntime --count ''"),
        Case("--out ''", E, ms + " --out '' --count 1", match="is empty"),
        Case("--shard ''", E, ms + " --shard ''"),
        Case("dataset info ''", E, "dataset info ''"),
        Case("dataset rebase ''", E, "dataset rebase ''"),
        Case("predict --predictor ''", E, "predict --predictor '' DARTS_V2"),
        Case("search --target ''", E, "search --target ''"),
        Case("sweep --lambdas ''", E, "sweep --target onnxruntime --lambdas ''"),
        # list options: --shard, --target, --lambdas, --seeds, --sizes, --models, --backends
        Case("--shard 0/1", L, ms + " --shard 0/1"),
        Case("--shard 3/2", L, ms + " --shard 3/2"),
        Case("--shard 1/0", L, ms + " --shard 1/0"),
        Case(f"--shard 1/{HUGE}", L, ms + f" --shard 1/{HUGE}", match="N must be <="),
        Case("--target onnxruntime,,torch", L, "search --target onnxruntime,,torch", match="empty item"),
        Case("--target nope", L, "search --target nope"),
        Case("--target onnxruntime/tpu", L, "search --target onnxruntime/tpu"),
        Case("--target a backend twice", L, "search --target onnxruntime,onnxruntime"),
        Case("sweep with two targets", L, "sweep --target onnxruntime,torch"),
        Case("sweep --lambdas 0,nan", L, "sweep --target onnxruntime --lambdas 0,nan"),
        Case(f"sweep --seeds 0,{HUGE}", L, f"sweep --target onnxruntime --seeds 0,{HUGE}"),
        Case("sweep --backends nope", L, "sweep --target onnxruntime --backends nope"),
        Case("bench predictors --sizes 10,x", L, "bench predictors --dataset {fx}/ds.parquet --sizes 10,x"),
        Case("bench predictors --seeds -1", L, "bench predictors --dataset {fx}/ds.parquet --seeds -1"),
        Case("bench predictors --models mlp,svm", L, "bench predictors --dataset {fx}/ds.parquet --models mlp,svm"),
        Case("bench transfer --sizes 0", L, "bench transfer --dataset {fx}/ds.parquet --dataset {fx}/five.parquet "
                                            "--sizes 0"),
        # the integers the issue named, and the selection pool
        Case("--count 99999999999999999999", "integer option", "space sample --count 99999999999999999999"),
        Case("--count 10000000000", "integer option", "measure --backend onnxruntime --count 10000000000"),
        Case("--seed 99999999999999999999999", "integer option",
             "measure --backend onnxruntime --count 1 --seed 99999999999999999999999"),
        Case("--select diverse --pool 100000000000", "integer option",
             "measure --backend onnxruntime --count 2 --select diverse --pool 100000000000"),
        Case("--select diverse --pool 200000", "integer option", ms + " --select diverse --pool 200000"),
        Case("--count 1.5", "integer option", "measure --backend onnxruntime --count 1.5"),
        Case("--pin-cpu on a core that is not there", "integer option", ms + " --pin-cpu 4096"),
        # output paths
        Case("measure --out under a file", O, ms + " --out {fx}/file/x.parquet", match="is a file, not a directory"),
        Case("measure --out a directory", O, ms + " --out {fx}/dir.parquet"),
        Case("measure --out not UTF-8", O, _bad_name(*shlex.split(ms), "--out", "{bad}.parquet")),
        Case("merge --out under a file", O, "dataset merge {fx}/ds.parquet --out {fx}/file/m.parquet"),
        Case("merge --out not UTF-8", O, _bad_name("dataset", "merge", "{fx}/ds.parquet", "--out", "{bad}.parquet")),
        Case("export --out under a file", O, "export DARTS_V2 --out {fx}/file/m.onnx"),
        Case("export --out a directory", O, "export DARTS_V2 --out {fx}/dir.parquet"),
        Case("fit --out under a file", O, "fit --dataset {fx}/ds.parquet --out {fx}/file/p"),
        Case("fit --out a folder of other files", O, "fit --dataset {fx}/ds.parquet --prior onnxruntime --out {fx}/notes",
             match="holds other files"),
        Case("bench model --out under a file", O, "bench {fx}/tiny.onnx --backend onnxruntime --repeats 3 "
                                                  "--warmup-ms 0 --out {fx}/file/b.parquet"),
        Case("train --out-dir a file", O, "train DARTS_V2 --out-dir {fx}/file"),
        Case("search --out under a file", O, "search --target onnxruntime --epochs 1 --limit 32 --layers 3 "
                                             "--channels 4 --no-measure --out {fx}/file/run"),
        Case("sweep --out a file", O, "sweep --target onnxruntime --epochs 1 --limit 32 --out {fx}/file"),
        Case("train --out under a file", O, "train DARTS_V2 --epochs 1 --limit 32 --out {fx}/file/r.json"),
        Case("bench predictors --out under a file", O, "bench predictors --dataset {fx}/ds.parquet --out {fx}/file/b"),
        Case("train --out into folders not made yet", O, "train DARTS_V2 --epochs 1 --layers 3 --channels 4 --limit 32 "
                                                        "--resolution 8 --out new/sub/r.json", WORKS),
        Case("bench transfer --out a dangling symlink", O, lambda ctx, d: _link_to_nothing(d, "bench", "transfer",
                                                                                          "--out")),
        Case("recommend --out under a file", O, "recommend --dataset {fx}/ds.parquet --out {fx}/file/t.json"),
        Case("recommend --write with --dataset", O, "recommend --write --dataset {fx}/ds.parquet"),
        # read-only directory (a tmpfs remounted read-only)
        Case("measure into a new file in a read-only dir", R, _on(read_only, (), *shlex.split(ms), "--out",
                                                                   "{at}/new.parquet")),
        Case("measure resuming a dataset in a read-only dir", R, _on(read_only, ("ds.parquet",), *CAMPAIGN,
                                                                      "--count", "30", "--out", "{at}/ds.parquet")),
        Case("rebase in a read-only dir", R, _on(read_only, ("ds.parquet",), "dataset", "rebase", "{at}/ds.parquet")),
        Case("merge --out a read-only dir", R, _on(read_only, (), "dataset", "merge", "{fx}/ds.parquet", "--out",
                                                    "{at}/m.parquet")),
        Case("export --out a read-only dir", R, _on(read_only, (), "export", "DARTS_V2", "--out", "{at}/m.onnx")),
        Case("fit --out a read-only dir", R, _on(read_only, (), "fit", "--dataset", "{fx}/ds.parquet", "--prior",
                                                  "onnxruntime", "--out", "{at}/p")),
        Case("bench model --out a read-only dir", R, _on(read_only, (), "bench", "{fx}/tiny.onnx", "--backend",
                                                          "onnxruntime", "--repeats", "3", "--warmup-ms", "0",
                                                          "--out", "{at}/b.parquet"), early=False),
        # full disk (a tmpfs filled to the last byte)
        Case("rebase on a full disk", D, _on(full_disk, ("ds.parquet",), "dataset", "rebase", "{at}/ds.parquet"),
             match="ds.parquet"),
        Case("merge --out a full disk", D, _on(full_disk, (), "dataset", "merge", "{fx}/ds.parquet", "--out",
                                                "{at}/m.parquet"), match="m.parquet"),
        Case("export --out a full disk", D, _on(full_disk, (), "export", "DARTS_V2", "--out", "{at}/m.onnx")),
        Case("fit --out a full disk", D, _on(full_disk, (), "fit", "--dataset", "{fx}/ds.parquet", "--prior",
                                              "onnxruntime", "--out", "{at}/p")),
        Case("bench model --out a full disk", D, _on(full_disk, (), "bench", "{fx}/tiny.onnx", "--backend",
                                                      "onnxruntime", "--repeats", "3", "--warmup-ms", "0", "--out",
                                                      "{at}/b.parquet"), early=False, match="b.parquet"),
        # predictor directories
        Case("predict with a missing predictor dir", P, "predict --predictor {fx}/none DARTS_V2"),
        Case("predict with a file as predictor", P, "predict --predictor {fx}/file DARTS_V2"),
        Case("predictor.json a list", P, "predict --predictor {fx}/pred_list DARTS_V2"),
        Case("predictor.json cut short", P, "predict --predictor {fx}/pred_bad_json DARTS_V2"),
        Case("weights missing", P, "predict --predictor {fx}/pred_no_weights DARTS_V2", match="is missing"),
        Case("weights from another save", P, "predict --predictor {fx}/pred_mixed DARTS_V2", match="differs"),
        Case("torch groups weights in an onnxruntime groups dir", P,
             "predict --predictor {fx}/ort_groups_torch_weights DARTS_V2"),
        Case("predictor for another backend", P, "predict --predictor {fx}/pred --backend torch DARTS_V2"),
        Case("search with weights from another save", P, "search --target onnxruntime --predictor {fx}/pred_mixed"),
        Case("fit --prior unknown backend", P, "fit --dataset {fx}/three.parquet --out p --prior nope"),
        # ONNX models for bench
        Case("bench a rank-0 ONNX input", X, "bench {fx}/scalar.onnx --backend onnxruntime"),
        Case("bench an int64 ONNX input", X, "bench {fx}/int_input.onnx --backend onnxruntime"),
        Case("bench a two-input ONNX", X, "bench {fx}/two_inputs.onnx --backend onnxruntime"),
        Case("bench an ONNX with a dynamic non-batch dim", X, "bench {fx}/dynamic.onnx --backend onnxruntime"),
        Case("bench a text file", X, "bench {fx}/text.parquet --backend onnxruntime"),
        Case("bench a missing file", X, "bench {fx}/none.onnx --backend onnxruntime"),
        Case("bench a directory", X, "bench {fx}/dir.parquet --backend onnxruntime"),
        Case("bench --reference unknown", X, "bench {fx}/tiny.onnx --backend onnxruntime --reference NOPE"),
        Case("bench --batch 2 on a fixed batch", X, "bench {fx}/tiny.onnx --backend onnxruntime --batch 2"),
        # what must work
        Case("latkit --version", W, "--version", WORKS),
        Case("backends", W, "backends", WORKS),
        Case("space sample", W, "space sample --count 2", WORKS),
        Case("validate the fixture", W, "dataset validate {fx}/ds.parquet", WORKS),
        Case("info --json", W, "dataset info --json {fx}/ds.parquet", WORKS),
        Case("merge into one of its inputs", W, _copy("ds.parquet", "dataset", "merge", "{copy}", "{fx}/three.parquet",
                                                      "--out", "{copy}"), EITHER, check=_keeps_rows("ds.parquet")),
        Case("rebase a copy", W, _copy("ds.parquet", "dataset", "rebase", "{copy}"), WORKS,
             check=_keeps_rows("ds.parquet")),
        Case("fit on 3 rows", W, "fit --dataset {fx}/three.parquet --model additive --out p", EITHER, check=_no_nan),
        Case("fit on 5 rows (one held out)", W, "fit --dataset {fx}/five.parquet --out p", WORKS, check=_no_nan),
        Case("predict a genotype keeping 'none' edges", W, "predict --predictor onnxruntime SNAS_AGGRESSIVE", WARNS,
             match="'none' edge"),
        Case("measure --count 0", W, ms.replace("--count 2", "--count 0") + " --out z.parquet", EITHER),
        Case("bench a tiny ONNX", W, "bench {fx}/tiny.onnx --backend onnxruntime --repeats 3 --warmup-ms 0", WORKS),
        Case("recommend", W, "recommend", WORKS),
    ]
    return c + _option_cases()


# --- the faults -------------------------------------------------------------------------------------------------

COUNT = 150  # architectures in a fault's campaign (about 15 s at the tiny shape)
TOTAL = COUNT * 12 // 10  # its rows: a reference and a repeat every 10 samples
LONG = 10_000  # a first writer that outlasts the second writers' tries (stopped by SIGINT)


def rows(path: Path) -> collections.Counter:
    """Every row of a dataset (file and journal) by its key (kind, seed, index, run, timestamp), counted."""
    from latkit.datasets.store import ROW_KEY, load

    if not path.exists() and not Path(f"{path}.journal").exists():
        return collections.Counter()
    t = load(path).table
    return collections.Counter(zip(*(t.column(k).to_pylist() for k in ROW_KEY)))


def exact(path: Path, count: int | None, before: collections.Counter) -> list[str]:
    """Problems of a finished campaign (``count`` None: one stopped early): a sample index missing or twice, a row
    of ``before`` lost, any row twice, a journal, lock or temporary file left, a file that does not validate."""
    from latkit.datasets.quality import validate

    now = rows(path)
    problems = []
    samples = sorted(k[2] for k, n in now.items() for _ in range(n) if k[0] == "sample")
    count = len(set(samples)) if count is None else count
    if samples != list(range(count)):
        problems.append(f"sample indices {len(samples)} rows, {len(set(samples))} distinct, not 0..{count - 1} once")
    lost = before - now
    if lost:
        problems.append(f"{sum(lost.values())} rows written before lost")
    twice = sum(n - 1 for n in now.values() if n > 1)
    if twice:
        problems.append(f"{twice} rows duplicated")
    left = [p.name for p in path.parent.iterdir() if p.name != path.name and p.name.startswith((path.name,
                                                                                                 f".{path.name}"))]
    if left:
        problems.append(f"left {', '.join(sorted(left))}")
    try:
        validate(path)
    except Exception as exc:  # noqa: BLE001 - any failure to validate is the finding
        problems.append(f"does not validate: {exc}")
    return problems


def start(argv: Sequence[Arg], d: Path, tag: str) -> subprocess.Popen:
    return subprocess.Popen(latkit_argv(argv), cwd=d, stdout=open(d / f"{tag}.out", "wb"),
                            stderr=open(d / f"{tag}.err", "wb"))


def _state(out: Path) -> tuple:
    return tuple((p.stat().st_size, p.stat().st_mtime_ns) if p.exists() else None
                 for p in (out, Path(f"{out}.journal")))


def wait_measuring(out: Path, proc: subprocess.Popen, timeout: float = 60) -> bool:
    """Wait until this run has written a row (the file or its journal changed); False if it ended first."""
    first, deadline = _state(out), time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if _state(out) != first:
            return True
        time.sleep(0.02)
    return False


def stop(proc: subprocess.Popen, out: Path) -> list[str]:
    """SIGINT a campaign that would run on (it must stop cleanly, exit 130) and check what it measured."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    rc = proc.wait(timeout=120)
    return ([f"first writer exit {rc}, not 130"] if rc != 130 else []) + exact(out, None, collections.Counter())


def wait_rows(out: Path, proc: subprocess.Popen, n: int, timeout: float = 120) -> bool:
    """Wait until the dataset holds ``n`` rows (file and journal); False if the run ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if sum(rows(out).values()) >= n:
                return True
        except Exception:  # noqa: BLE001 - read while the writer replaces the file: read again
            pass
        time.sleep(0.05)
    return False


def err_of(d: Path, tag: str) -> str:
    return (d / f"{tag}.err").read_bytes().decode(errors="replace")


def _resume(out: Path, d: Path, count: int, before: collections.Counter) -> list[str]:
    """Rerun the campaign to its end: it must work and leave the file exact."""
    run = run_latkit([*CAMPAIGN, "--count", str(count), "--out", str(out)], d)
    problems = [f"resume: {p}" for p in judge(WORKS, run)]
    return problems + exact(out, count, before)


def fault_kill9(ctx: Ctx, d: Path) -> tuple[list[str], str]:
    """kill -9 five times, at rows drawn at random, then resume to the end."""
    out, problems, notes, seen = d / "k.parquet", [], [], collections.Counter()
    for i, target in enumerate(sorted(ctx.rng.sample(range(2, TOTAL - 2), 5))):
        proc = start([*CAMPAIGN, "--count", str(COUNT), "--out", str(out)], d, f"run{i}")
        wait_rows(out, proc, target)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        tmp = [p.name for p in d.glob(".k.parquet*")]
        now = rows(out)
        lost = seen - now
        if lost:
            problems.append(f"kill {i + 1}: {sum(lost.values())} rows written before lost")
        notes.append(f"{sum(now.values())} rows" + (" (in a write: temporary left)" if tmp else ""))
        seen = now
    problems += _resume(out, d, COUNT, seen)
    return problems, f"killed at {', '.join(notes)} of ~{TOTAL}; resumed"


def fault_kill_in_write(ctx: Ctx, d: Path) -> tuple[list[str], str]:
    """A process killed (os._exit) just after writing the final Parquet temporary, before it replaces the file."""
    out, count = d / "w.parquet", 20
    argv = [*CAMPAIGN, "--count", str(count), "--out", str(out)]
    script = ("import os\nimport pyarrow.parquet as pq\nreal = pq.write_table\n"
              "def die(*a, **k):\n    real(*a, **k)\n    os._exit(9)\n"
              f"pq.write_table = die\nfrom latkit.cli import main\nmain({argv!r})\n")
    rc = subprocess.run([sys.executable, "-c", script], cwd=d, capture_output=True).returncode
    tmp = [p.name for p in d.glob(".w.parquet*.tmp")]
    before = rows(out)
    problems = [] if rc == 9 and tmp else [f"the kill did not land in the write (exit {rc}, temporaries {tmp})"]
    problems += _resume(out, d, count, before)
    return problems, f"exit {rc} with {len(tmp)} temporary, {sum(before.values())} rows in the journal; rerun"


def _signal(sig: int, expect_rc: int | None) -> Callable[[Ctx, Path], tuple[list[str], str]]:
    def fault(ctx: Ctx, d: Path) -> tuple[list[str], str]:
        out, problems = d / "s.parquet", []
        proc = start([*CAMPAIGN, "--count", str(COUNT), "--out", str(out)], d, "run")
        wait_rows(out, proc, ctx.rng.randrange(2, TOTAL - 2))
        proc.send_signal(sig)
        rc = proc.wait(timeout=60)
        err = err_of(d, "run")
        if "Traceback" in err:
            problems.append("a traceback")
        if expect_rc is not None and rc != expect_rc:
            problems.append(f"exit {rc}, not {expect_rc}")
        if expect_rc is not None and (err.count("\n") != 1 or not err.startswith("latkit: interrupted")):
            problems.append(f"{err.count(chr(10))} stderr lines, not one 'latkit: interrupted' line")
        before = rows(out)
        problems += _resume(out, d, COUNT, before)
        first = err.splitlines()[0][:90] if err.strip() else "(nothing on stderr)"
        return problems, f"exit {rc} at {sum(before.values())} rows: {first}; resumed"
    return fault


def fault_two_writers(ctx: Ctx, d: Path) -> tuple[list[str], str]:
    """While a campaign runs, a second writer by the same name, a symlink, a symlinked folder, merge and rebase
    (each must be refused); then the first, stopped by SIGINT, must hold what it measured, once."""
    out, problems, notes = d / "k.parquet", [], []
    proc = start([*CAMPAIGN, "--count", str(LONG), "--out", str(out)], d, "first")
    if not wait_measuring(out, proc):
        return [f"the first writer ended early: {err_of(d, 'first')[:200]}"], ""
    (d / "link.parquet").symlink_to(out)
    (d / "linkdir").symlink_to(d)
    second = [*CAMPAIGN, "--count", str(COUNT), "--out"]
    tries = {"same name": second + [str(out)], "symlink": second + [str(d / "link.parquet")],
             "symlinked folder": second + [str(d / "linkdir" / "k.parquet")],
             "merge --out": ["dataset", "merge", str(ctx.fx / "ds.parquet"), "--out", str(out)],
             "rebase": ["dataset", "rebase", str(out)]}
    for name, argv in tries.items():
        if proc.poll() is not None:
            problems.append(f"{name}: not tried, the first writer had ended")
            continue
        run = run_latkit(argv, d, timeout=30)
        bad = judge(REFUSED, run, "being written by another latkit process")
        problems += [f"{name}: {p}" for p in bad]
        notes.append(f"{name} refused ({run.seconds:.1f} s)" if not bad else
                     f"{name} NOT refused (exit {run.rc}: {(run.err or run.out).strip()[:100]})")
    problems += stop(proc, out)
    return problems, "; ".join(notes) + "; the first writer stopped by SIGINT"


def fault_hard_link(ctx: Ctx, d: Path) -> tuple[list[str], str]:
    """A second writer through a hard link to the dataset a campaign is resuming: refused, or the first's file
    stays exact."""
    out = d / "k.parquet"
    shutil.copy(ctx.fx / "ds.parquet", out)
    os.link(out, d / "hard.parquet")
    proc = start([*CAMPAIGN, "--count", str(COUNT), "--out", str(out)], d, "first")
    if not wait_measuring(out, proc):
        return [f"the first writer ended early: {err_of(d, 'first')[:200]}"], ""
    run = run_latkit([*CAMPAIGN, "--count", "40", "--out", str(d / "hard.parquet")], d, timeout=60)
    how = "refused" if run.rc == 2 else f"exit {run.rc}: measured apart ({run.out.strip().splitlines()[-1][:80]})"
    rc = proc.wait(timeout=180)
    problems = [f"second: {p}" for p in judge(EITHER, run)] + ([f"first writer exit {rc}"] if rc else [])
    return problems + exact(out, COUNT, rows(ctx.fx / "ds.parquet")), f"hard-link writer {how}; first exit {rc}"


def fault_lock_deleted(ctx: Ctx, d: Path) -> tuple[list[str], str]:
    """FILE.lock deleted under a running writer, then second writers by the same absolute name, a relative name and
    a symlinked folder: each must be refused (one let in is killed after 20 s); the first, stopped by SIGINT, must
    hold what it measured, once."""
    out, problems, notes = d / "k.parquet", [], []
    proc = start([*CAMPAIGN, "--count", str(LONG), "--out", str(out)], d, "first")
    if not wait_measuring(out, proc):
        return [f"the first writer ended early: {err_of(d, 'first')[:200]}"], ""
    Path(f"{out}.lock").unlink()
    (d / "linkdir").symlink_to(d)
    for name, path in {"same name": str(out), "relative name": "k.parquet",
                       "symlinked folder": str(d / "linkdir" / "k.parquet")}.items():
        if proc.poll() is not None:
            problems.append(f"{name}: not tried, the first writer had ended")
            continue
        run = run_latkit([*CAMPAIGN, "--count", str(LONG), "--out", path], d, timeout=20)
        bad = judge(REFUSED, run, "being written by another latkit process") if run.rc is not None else \
            ["let in (still measuring after 20 s; killed)"]
        problems += [f"{name}: {p}" for p in bad]
        notes.append(f"{name} {'refused' if not bad else 'let in' if run.rc is None else f'exit {run.rc}'}")
    problems += stop(proc, out)
    return problems, "; ".join(notes) + "; the first stopped by SIGINT"


def fault_full_disk(size: str, count: int) -> Callable[[Ctx, Path], tuple[list[str], str]]:
    """A campaign on a tmpfs of ``size``: refused with one line naming the dataset, its rows kept; after the disk
    grows, a rerun ends exact."""
    def fault(ctx: Ctx, d: Path) -> tuple[list[str], str]:
        disk = mount_tmpfs(ctx, d / "disk", size)
        out = disk / "f.parquet"
        run = run_latkit([*CAMPAIGN, "--count", str(count), "--out", str(out)], d)
        problems = judge(REFUSED, run, str(out)) + ([] if "safe" in run.err else ["the error does not say the rows "
                                                                                   "are safe"])
        before = rows(out)
        remount(disk, "size=8m")
        problems += _resume(out, disk, count, before)
        return problems, f"at {sum(before.values())} rows: {run.err.strip()[:150]}; grown, rerun"
    return fault


def faults() -> list[Fault]:
    K = "fault: campaign"
    return [Fault("kill -9 at 5 random points, then resume", K, fault_kill9),
            Fault("kill -9 inside the final write, then rerun", K, fault_kill_in_write),
            Fault("SIGINT mid-campaign, then resume", K, _signal(signal.SIGINT, 130)),
            Fault("SIGTERM mid-campaign, then resume", K, _signal(signal.SIGTERM, None)),
            Fault("second writers by name, symlink, folder link, merge, rebase", "fault: two writers",
                  fault_two_writers),
            Fault("second writer by a hard link", "fault: two writers", fault_hard_link),
            Fault("second writers after FILE.lock is deleted", "fault: two writers", fault_lock_deleted),
            Fault("disk full while appending (24 KiB tmpfs, 100 archs)", "fault: full disk", fault_full_disk("24k", 100)),
            Fault("disk full at the final write (40 KiB tmpfs, 20 archs)", "fault: full disk",
                  fault_full_disk("40k", 20))]


def run_fault(fault: Fault, ctx: Ctx, d: Path) -> Outcome:
    d.mkdir(parents=True, exist_ok=True)
    start_time = time.perf_counter()
    try:
        problems, note = fault.run(ctx, d)
    except Skip as exc:
        return Outcome(fault.name, fault.category, EXACT, None, 0.0, False, f"not run: {exc}", [], ran=False)
    return Outcome(fault.name, fault.category, EXACT, None, time.perf_counter() - start_time, False, note, problems)


# --- the report -------------------------------------------------------------------------------------------------

def markdown(outcomes: list[Outcome], notes: list[str], seed: int) -> str:
    """The summary and one table row per case."""
    refused = [o for o in outcomes if o.ran and o.expect != EXACT and o.rc == 2]
    early = [o.seconds for o in refused if o.early]
    lines = ["# latkit bad-input and fault probe", "",
             f"`python -m benchmarks.probe` (seed {seed}); {len(outcomes)} cases: "
             f"{sum(o.passed for o in outcomes)} as expected, {sum(o.ran and not o.passed for o in outcomes)} not, "
             f"{sum(not o.ran for o in outcomes)} not run.", "",
             f"- refused with exit 2: {len(refused)}; {sum(o.err_lines == 1 for o in refused)} of them in exactly one "
             f"stderr line, {sum(o.passed for o in refused)} fully as expected (one line, files untouched, the "
             "expected text)",
             f"- worked (exit 0): {sum(o.rc == 0 for o in outcomes)}; other exits: "
             f"{', '.join(f'{o.rc} ({o.name})' for o in outcomes if o.rc not in (None, 0, 2)) or 'none'}",
             f"- faults exact: {sum(o.passed for o in outcomes if o.expect == EXACT)} of "
             f"{sum(o.ran for o in outcomes if o.expect == EXACT)}"]
    if early:
        lines.append(f"- wall time of the {len(early)} refusals before measuring: median {statistics.median(early):.2f} s,"
                     f" max {max(early):.2f} s, {sum(s < 1 for s in early)} under 1 s")
    lines += [f"- {n}" for n in notes]
    by_category = collections.Counter(o.category for o in outcomes)
    lines += ["", "cases by category: " + ", ".join(f"{k} {v}" for k, v in by_category.items()), "",
              "| # | category | case | expect | exit | s | result | first stderr line (or what happened) |",
              "|---|---|---|---|---|---|---|---|"]
    for i, o in enumerate(outcomes, 1):
        result = "not run" if not o.ran else "ok" if o.passed else "FAIL: " + "; ".join(o.problems)
        cell = (lambda s: s.replace("|", "\\|").replace("\n", " "))  # noqa: E731
        lines.append(f"| {i} | {o.category} | {cell(o.name)} | {o.expect} | {'' if o.rc is None else o.rc} | "
                     f"{o.seconds:.1f} | {cell(result)} | {cell(o.message[:160])} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="skip the campaign faults")
    parser.add_argument("--out", help="write the Markdown report here (default: stdout only)")
    parser.add_argument("--seed", type=int, help="the random kill points (default: drawn, and printed)")
    parser.add_argument("--only", action="append", help="run only the cases whose name or category holds this "
                                                         "text (repeatable)")
    args = parser.parse_args(argv)
    # A shell starts a background job (`... &`) with SIGINT ignored, and every process inherits that: the latkit runs
    # would then ignore the SIGINT faults. Catching it here gives each child SIGINT's default again, as at a terminal.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    seed = random.randrange(2**31) if args.seed is None else args.seed
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="latkit-probe-") as tmp:
        ctx = Ctx(Path(tmp), random.Random(seed))
        try:
            notes = build_fixtures(ctx)
            todo: list[Case | Fault] = [*cases(), *([] if args.quick else faults())]
            todo = [t for t in todo if not args.only or any(o in t.name or o in t.category for o in args.only)]
            for i, item in enumerate(todo, 1):
                d = ctx.root / "cases" / f"{i:03d}"
                o = run_case(item, ctx, d) if isinstance(item, Case) else run_fault(item, ctx, d)
                outcomes.append(o)
                flag = "ok" if o.passed else "not run" if not o.ran else "FAIL " + "; ".join(o.problems)
                print(f"[{i}/{len(todo)}] {o.seconds:5.1f} s {o.name}: {flag}", file=sys.stderr, flush=True)
        finally:
            unmount_all(ctx)
    report = markdown(outcomes, notes, seed)
    if args.out:
        Path(args.out).write_text(report)
    print(report)
    return 0 if all(o.passed or not o.ran for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
