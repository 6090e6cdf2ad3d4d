"""The latency dataset format: one Parquet file per backend and configuration, one row per timing.

Rows have a ``kind``: ``sample`` (architecture ``index`` of sampling campaign ``seed``: the training data),
``repeat`` (an independent re-measurement of an earlier sample: gives the noise floor) and ``reference`` (the fixed
reference architecture timed as a sample every K samples: shows drift), and ``model`` (a user's ONNX model timed by
``latkit bench MODEL.onnx``, named in the ``genotype`` column). In a duet file (header ``protocol.duet``; format
version 2) every row was timed beside the reference, run for run: ``ref_<stat>`` are the reference's statistics
from that window and ``ratio`` is ``min_ms / ref_min_ms``; ``Dataset.latency_ms`` turns them into the normalised
latency (ratio times the dataset's reference baseline) when the file is read. Version-1 files (solo protocol) read
with those columns null and ``protocol.duet`` False. Every latency column is in milliseconds;
``timing_ms`` and ``timing_cpu_ms`` are the timed loop's wall and thread-CPU time (their ratio shows how much the
measuring thread was descheduled by other work on the machine); ``attempts`` counts the timed loops run before
one got enough of a core (see ``MeasureProtocol.min_cpu_share``). A sample index may have error rows followed by
one ok row (a retried failure); the ok row supersedes them.

The file's schema metadata (key ``latkit``) holds the header: backend, device, backend options, network config,
protocol, seed and the environment fingerprint of the campaign, plus ``runs``: for every run that wrote rows (the
``run_id`` column), its own environment, protocol, CPUs (affinity), host and start time. Files without ``runs`` or
``backend_options`` (older v1 files) read as having none.

Writing is crash-safe: each row is appended and fsync'd to ``FILE.journal`` (JSON lines: a ``header`` record, one
``run`` record per run, then ``row`` records) and folded into the Parquet file by an atomic replace every few rows
and at the end; a reader sees both, so ``kill -9`` loses at most the architecture in flight. A writer holds an OS
lock (flock) on ``FILE.lock`` for its whole run (and on Linux an abstract socket named after it, which deleting the
file does not remove), so a second writer is refused instead of interleaving; the lock goes with the process however
it ends (a lock file left behind by a killed writer means nothing) and the file is removed on release. A symlink to
a dataset is the dataset: its journal, lock and replacements are those of the real file.
A journal line that cannot be read is counted (``Dataset.unreadable_lines``), never silently dropped: a partial last
line (a write cut short by a crash) is cut off when a writer resumes; any other unreadable line is moved by
compaction to ``FILE.journal.rejected``.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

try:
    import fcntl
except ImportError:  # not POSIX: filelock's lock instead (its file stays in place)
    fcntl = None  # type: ignore[assignment]

from latkit.atomic import atomic_path, fsync_dir, nearest_existing
from latkit.errors import LatkitError

FORMAT = "latkit-latency-dataset"
FORMAT_VERSION = 2  # 2: the reference's statistics from each row's window (ref_*) and the ratio; 1 reads as solo
READABLE_VERSIONS = (1, 2)
META_KEY = b"latkit"
# model: a user's ONNX model (latkit bench MODEL.onnx); anchor: one of the file's anchors re-timed by a later run
KINDS = ("sample", "repeat", "reference", "model", "anchor")
STATUSES = ("ok", "error")
STAT_COLUMNS = ("median_ms", "mean_ms", "std_ms", "min_ms", "p10_ms", "p90_ms", "iqm_ms")
STAGE_COLUMNS = ("build_ms", "prepare_ms", "warmup_ms", "timing_ms", "timing_cpu_ms")
REF_COLUMNS = tuple(f"ref_{c}" for c in STAT_COLUMNS)  # the reference's statistics in the row's window (duet)
SCHEMA = pa.schema(
    [("kind", pa.string()), ("seed", pa.int64()), ("index", pa.int64()), ("genotype", pa.string()),
     ("backend", pa.string()), ("device", pa.string()), ("batch", pa.int64()), ("resolution", pa.int64()),
     ("channels", pa.int64()), ("layers", pa.int64())]
    + [(c, pa.float64()) for c in STAT_COLUMNS] + [("n", pa.int64())]
    + [(c, pa.float64()) for c in STAGE_COLUMNS] + [("attempts", pa.int64())]
    + [("status", pa.string()), ("error", pa.string()), ("timestamp", pa.string()), ("run_id", pa.string())]
    + [(c, pa.float64()) for c in REF_COLUMNS] + [("ratio", pa.float64())]
)
OPTIONAL_COLUMNS = REF_COLUMNS + ("ratio",)  # absent from version-1 files: read as nulls
COLUMNS = tuple(SCHEMA.names)
BASELINE_PERCENTILE = 10.0  # Dataset.baseline_ms: the reference's latency that normalised latencies are in
# A window whose reference ran more than this much slower than the baseline is flagged (Dataset.flagged): the host was
# in a slow state there. The ratio cancels a slowdown that scales both programs alike; a flagged window is where one
# that does not would show.
REFERENCE_BOUND_PCT = 10.0
# A frozen file names this many of its samples, of typical sizes (ratios at the 10th to 90th percentile), as its
# anchors: every later run that appends to it re-times them first (kind 'anchor'), and the median of their ratio
# against the file's is that run's level, divided out of its normalised latencies (Dataset.levels; RESULTS "A unit
# that holds across days").
ANCHORS = 8
# Python types a journal row's values may have, per column (None is always allowed).
_PY_TYPES = tuple((f.name, (str,) if f.type == pa.string() else (int,) if f.type == pa.int64() else (int, float))
                  for f in SCHEMA)
# Header keys that must agree for rows to belong in one file (a key missing from an older file reads as its
# default); "environment" must agree too unless forced.
IDENTITY_KEYS = ("backend", "device", "backend_options", "config", "protocol", "seed", "sampler_version",
                 "reference")
IDENTITY_DEFAULTS = {"backend_options": {}, "reference": None}
# What identifies one row: the same row read twice (from two inputs, or from the file and a stale journal).
ROW_KEY = ("kind", "seed", "index", "run_id", "timestamp")


class DatasetError(LatkitError):
    """A dataset file that is missing, corrupt, foreign, incompatible or being written by another process."""


def real_path(path: str | Path) -> Path:
    """``path``, or the file it links to if it is a symlink: every name of a dataset maps to one journal and one
    lock, and an atomic replace writes the file, not over the link."""
    if not str(path).strip() or Path(path).name in ("", ".", ".."):
        raise DatasetError(f"{str(path)!r} names no dataset file (give a path like runs/d.parquet)")
    path = Path(path)
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def journal_path(path: Path) -> Path:
    real = real_path(path)
    return real.with_name(real.name + ".journal")


def rejected_path(path: Path) -> Path:
    """Where compaction keeps journal lines it could not read."""
    real = real_path(path)
    return real.with_name(real.name + ".journal.rejected")


def lock_path(path: Path) -> Path:
    """The writer lock of ``path``, beside the real file (so a symlink and the real name take the same lock)."""
    real = real_path(path)
    return real.with_name(real.name + ".lock")


def check_out_path(path: str | Path) -> Path:
    """``path`` as a dataset to write: a DatasetError before anything is measured if its name cannot be a Parquet
    file's (not UTF-8) or a parent of it is a file, not a directory."""
    path = Path(path)
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise DatasetError(f"{ascii(str(path))}: the file name is not valid UTF-8, which a Parquet file needs; "
                           "choose another name") from None
    parent = nearest_existing(path)
    if not parent.is_dir():
        raise DatasetError(f"cannot write {path}: {parent} is a file, not a directory")
    return path


def upgrade(header: dict[str, Any]) -> dict[str, Any]:
    """A header as this version writes it: a protocol without ``duet`` (files measured before the duet protocol)
    says ``duet: False``, the solo protocol it was measured with. (Fingerprints before 2026-11-27 also held live
    clock readings; the current ones hold nominal clocks, which those files cannot be given: resuming one needs
    ``--force``.)"""
    protocol = header.get("protocol")
    if isinstance(protocol, dict) and "duet" not in protocol:
        header = dict(header, protocol={**protocol, "duet": False})
    return header


# What every header must hold, and of which type (seed: None in a file of `latkit bench` rows).
HEADER_TYPES: dict[str, tuple[type, ...]] = {"format": (str,), "version": (int,), "backend": (str,), "device": (str,),
                                             "config": (dict,), "protocol": (dict,), "seed": (int, type(None)),
                                             "sampler_version": (int,), "environment": (dict,)}


CONFIG_INTS = ("batch", "resolution", "channels", "layers", "in_channels", "classes", "input_shape")


def check_header(header: dict[str, Any], path: Path) -> None:
    """A DatasetError naming the first key of ``header`` that is missing or of the wrong type: every reader
    (``load``, so ``dataset info``, ``validate``, ``fit``, ...) reads a header through this, and relies only on what
    it checks (``in_channels`` and ``classes``, absent from some files, are read with ``get``)."""
    for key, types in HEADER_TYPES.items():
        if key not in header:
            raise DatasetError(f"{path}: the header has no {key!r}; the file is corrupt or not a latkit dataset")
        if not isinstance(header[key], types) or isinstance(header[key], bool):
            raise DatasetError(f"{path}: the header's {key!r} is a {type(header[key]).__name__}, not a "
                               f"{' or '.join(t.__name__ for t in types)}")
    config = header["config"]
    shape = ("input_shape",) if header["seed"] is None else ("batch", "resolution", "channels", "layers")
    missing = [k for k in shape if k not in config]
    if missing:
        raise DatasetError(f"{path}: the header's config has no {', '.join(missing)}")
    for key in [k for k in CONFIG_INTS if k in config]:  # what readers print and build networks from
        value = config[key]
        ints = value if key == "input_shape" and isinstance(value, list) else [value]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in ints):
            raise DatasetError(f"{path}: the header's config {key!r} is {value!r}, not "
                               f"{'a list of integers' if key == 'input_shape' else 'an integer'}")
    runs = header.get("runs", {})
    if not isinstance(runs, dict):
        raise DatasetError(f"{path}: the header's 'runs' is a {type(runs).__name__}, not a dict")
    for run_id, run in runs.items():
        if not isinstance(run, dict):
            raise DatasetError(f"{path}: the header's run {run_id!r} is a {type(run).__name__}, not a dict")


def protocol_name(header: dict[str, Any]) -> str:
    """'duet' (each row timed beside the reference) or 'solo' (each row timed alone)."""
    return "duet" if header.get("protocol", {}).get("duet") else "solo"


def header_diff(a: dict[str, Any], b: dict[str, Any], with_environment: bool = True) -> list[str]:
    """Header keys whose values differ (environment keys reported one by one)."""
    keys = [k for k in IDENTITY_KEYS if a.get(k, IDENTITY_DEFAULTS.get(k)) != b.get(k, IDENTITY_DEFAULTS.get(k))]
    if with_environment:
        env_a, env_b = a.get("environment", {}), b.get("environment", {})
        keys += [f"environment.{k}" for k in sorted(set(env_a) | set(env_b)) if env_a.get(k) != env_b.get(k)]
    return keys


class WriterLock:
    """An OS lock (flock) on ``FILE.lock``: released with the process however it ends, so only a held lock counts,
    never a file left behind; the file is removed on release, before the lock goes (a process that opened it
    meanwhile sees, once it gets the lock, that the file is gone and takes a new one). On Linux the writer also
    binds an abstract socket named after the lock's path, which no file operation can remove: a ``FILE.lock``
    deleted under a running writer lets no second one in."""

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None
        self.sock: socket.socket | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting; False if another process (or another writer here) holds it."""
        if sys.platform.startswith("linux"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind("\0latkit-writer:" + hashlib.sha256(os.fsencode(os.path.realpath(self.path))).hexdigest())
            except OSError as exc:
                sock.close()
                if exc.errno == errno.EADDRINUSE:
                    return False
                raise
            self.sock = sock
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError:
                self._unbind()
                raise
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                self._unbind()
                if isinstance(exc, BlockingIOError):
                    return False
                raise
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                current = None
            if current is not None and os.path.samestat(current, os.fstat(fd)):
                self.fd = fd
                return True
            os.close(fd)  # its holder removed it before we got the lock: lock the file there now

    def _unbind(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self.fd)  # releases the lock
            self.fd = None
            self._unbind()


def _lock(path: Path) -> WriterLock | FileLock:
    """Take ``path``'s writer lock without waiting; a DatasetError if another process holds it."""
    check_out_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = WriterLock(lock_path(path)) if fcntl is not None else FileLock(str(lock_path(path)), timeout=0)
    try:
        acquired = lock.acquire() is not False
    except Timeout:
        acquired = False
    except OSError as exc:
        raise DatasetError(f"cannot lock {path}: {exc.strerror or exc}") from None
    if not acquired:
        raise DatasetError(f"{path} is being written by another latkit process; wait for it or use another "
                           "--out")
    return lock


def _read_parquet(path: Path) -> tuple[dict[str, Any], pa.Table]:
    try:
        pf = pq.ParquetFile(path)
        table = pf.read()
    except (pa.ArrowInvalid, OSError) as exc:
        raise DatasetError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    meta = pf.schema_arrow.metadata or {}
    if META_KEY not in meta:
        raise DatasetError(f"{path}: not a latkit latency dataset (no '{META_KEY.decode()}' metadata)")
    try:
        header = json.loads(meta[META_KEY])
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DatasetError(f"{path}: corrupt latkit metadata") from None
    if not isinstance(header, dict):
        raise DatasetError(f"{path}: corrupt latkit metadata (not an object)")
    if header.get("format") != FORMAT or header.get("version") not in READABLE_VERSIONS:
        raise DatasetError(f"{path}: format {header.get('format')!r} v{header.get('version')}, "
                           f"expected {FORMAT!r} v{' or v'.join(map(str, READABLE_VERSIONS))}")
    for c in OPTIONAL_COLUMNS:
        if c not in table.column_names:
            table = table.append_column(c, pa.nulls(table.num_rows, pa.float64()))
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}")
    try:
        return header, table.select(list(COLUMNS)).cast(SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise DatasetError(f"{path}: column(s) of the wrong type ({str(exc).splitlines()[0]})") from None


def _parse(line: bytes) -> dict[str, Any] | None:
    """The record on one journal line, or None if the line is not a complete, well-typed record."""
    try:
        record = json.loads(line)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        return None
    if not isinstance(record, dict) or len(record) != 1 or not isinstance(next(iter(record.values())), dict):
        return None
    row = record.get("row")
    if row is not None and not all(row.get(c) is None or (isinstance(row[c], t) and not isinstance(row[c], bool))
                                   for c, t in _PY_TYPES):
        return None
    run = record.get("run")
    if run is not None and not isinstance(run.get("run_id"), str):
        return None
    return record if {"header", "row", "run"} & record.keys() else None


@dataclass
class _Journal:
    """What a journal holds: header, rows and run records, and the lines that could not be read."""

    header: dict[str, Any] | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    bad: list[tuple[int, bytes]] = field(default_factory=list)  # (line number, raw line) of unreadable full lines
    torn: tuple[int, bytes] | None = None  # an unreadable last line without a newline: a write cut short


def _read_journal(path: Path) -> _Journal:
    """The journal's records; none if it is gone. Read once: a writer may fold it into the Parquet file and remove
    it at any moment, and a reader reads the Parquet file after the journal, so a journal gone is one folded in."""
    j = _Journal()
    try:
        lines = journal_path(path).read_bytes().split(b"\n")
    except FileNotFoundError:
        return j
    for number, line in enumerate(lines, 1):
        last = number == len(lines)
        if last and not line:
            break  # the file ends with a newline
        record = _parse(line)
        if record is None:
            if last:
                j.torn = (number, line)
            else:
                j.bad.append((number, line))
        elif "header" in record:
            j.header = record["header"]
        elif "run" in record:
            run = dict(record["run"])
            j.runs.setdefault(run.pop("run_id"), run)
        else:
            j.rows.append(record["row"])
    return j


def _end_with_full_line(path: Path) -> int | None:
    """Make ``path``'s journal end with a complete line before appending to it (else the next record would join
    a torn one and both be lost): a last line without a newline is completed if it holds a whole record, else cut
    off; fsync'd. Returns the number of the line cut off, if one was."""
    jp = journal_path(path)
    if not jp.exists():
        return None
    with open(jp, "r+b") as f:
        data = f.read()
        if not data or data.endswith(b"\n"):
            return None
        start = data.rfind(b"\n") + 1
        cut = None
        if _parse(data[start:]) is not None:
            f.write(b"\n")
        else:
            f.truncate(start)
            cut = data.count(b"\n") + 1
        f.flush()
        os.fsync(f.fileno())
    return cut


def _set_aside(path: Path, journal: _Journal) -> int:
    """Append the journal's unreadable lines to ``FILE.journal.rejected`` (fsync'd); returns how many."""
    lines = [raw for _, raw in journal.bad] + ([journal.torn[1]] if journal.torn else [])
    if lines:
        with open(rejected_path(path), "ab") as f:
            f.write(b"".join(raw + b"\n" for raw in lines))
            f.flush()
            os.fsync(f.fileno())
    return len(lines)


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist([{c: r.get(c) for c in COLUMNS} for r in rows], schema=SCHEMA)


def _dedupe(table: pa.Table) -> pa.Table:
    """Drop exact duplicate rows (a crash between a compaction's replace and its journal reset)."""
    seen, keep = set(), []
    for i, key in enumerate(zip(*(table.column(c).to_pylist() for c in ROW_KEY))):
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return table.take(keep) if len(keep) < table.num_rows else table


@dataclass
class Dataset:
    """A loaded dataset: header plus all rows (Parquet and journal), and what of the journal could not be read."""

    path: Path
    header: dict[str, Any]
    table: pa.Table
    bad_lines: tuple[int, ...] = ()  # journal line numbers (1-based) holding no readable record
    torn_line: int | None = None  # a partial last journal line (a write cut short by a crash), if any
    set_aside: int = 0  # unreadable lines earlier compactions moved to FILE.journal.rejected

    @property
    def unreadable_lines(self) -> int:
        """How many journal lines could not be read (a torn last line included)."""
        return len(self.bad_lines) + (self.torn_line is not None)

    @property
    def runs(self) -> dict[str, dict[str, Any]]:
        """Provenance of every run that wrote rows: run_id -> environment, protocol, cpus, host, started."""
        return self.header.get("runs", {})

    def column(self, name: str) -> np.ndarray:
        return self.table.column(name).to_numpy(zero_copy_only=False)

    @property
    def duet(self) -> bool:
        """Whether every row was timed beside the reference (the duet protocol), so it can be normalised."""
        return protocol_name(self.header) == "duet"

    @property
    def frozen(self) -> bool:
        """Whether the file's unit is frozen in its header (``baseline``), as every file is once its first run ends."""
        return isinstance(self.header.get("baseline"), dict)

    def baseline_ms(self, stat: str = "min_ms") -> float:
        """The reference's latency that normalised latencies are expressed in: the one frozen in the header
        (``baseline_record``: when the run that first wrote the file ended, or at ``rebase``), so appending rows or
        merging shards never moves the unit; the live value (``live_baseline_ms``) while the first run writes."""
        if not self.frozen:
            return self.live_baseline_ms(stat)
        try:
            return float(self.header["baseline"]["ms"][stat])
        except (KeyError, TypeError, ValueError):
            raise DatasetError(f"{self.path}: the header's frozen baseline has no {stat}; re-base the file "
                               "(latkit dataset rebase)") from None

    def live_baseline_ms(self, stat: str = "min_ms") -> float:
        """The ``BASELINE_PERCENTILE``th percentile of ``ref_<stat>`` over the windows of every ok row present. Low,
        because a slow host state only ever adds time (the fast windows are the host's undisturbed speed); not the
        single fastest window, which one lucky window would move. NaN for a solo dataset."""
        values = np.asarray(self.table.column(f"ref_{stat}").to_pylist(), dtype=np.float64)
        ok = np.asarray(self.table.column("status").to_pylist()) == "ok"
        values = values[ok & np.isfinite(values)]
        return float(np.percentile(values, BASELINE_PERCENTILE)) if values.size else float("nan")

    def baseline_record(self) -> dict[str, Any] | None:
        """The header's ``baseline`` for this file's rows now: the live baseline of every statistic, the windows it
        is over and when; None for a file with no duet window yet (a solo file, or no ok row)."""
        if not self.duet:
            return None
        ms = {stat: self.live_baseline_ms(stat) for stat in STAT_COLUMNS if stat != "std_ms"}
        if not np.isfinite(ms["min_ms"]):
            return None
        status = np.asarray(self.table.column("status").to_pylist())
        return {"ms": ms, "percentile": BASELINE_PERCENTILE, "windows": int((status == "ok").sum()),
                "frozen_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "anchors": self._pick_anchors()}

    def _pick_anchors(self) -> list[int]:
        """``ANCHORS`` sample indices of typical size: the ok samples at evenly spaced ratio percentiles from the
        10th to the 90th (none when the file holds fewer than 4 x ``ANCHORS``); a file that has anchors keeps them."""
        if self.anchors():
            return self.anchors()
        s = self.samples()
        if s.num_rows < 4 * ANCHORS:
            return []
        ratio = np.asarray(s.column("min_ms").to_pylist(), dtype=np.float64) / np.asarray(
            s.column("ref_min_ms").to_pylist(), dtype=np.float64)
        order = np.argsort(ratio, kind="stable")
        ranks = np.round(np.linspace(0.1, 0.9, ANCHORS) * (len(order) - 1)).astype(int)
        return sorted(int(s.column("index")[int(order[k])].as_py()) for k in ranks)

    def flagged(self, table: pa.Table, stat: str = "min_ms") -> np.ndarray:
        """Mask of the rows of ``table`` whose window's reference ran more than ``REFERENCE_BOUND_PCT`` slower than
        ``baseline_ms(stat)`` (all False for a solo dataset)."""
        ref = np.asarray(table.column(f"ref_{stat}").to_pylist(), dtype=np.float64)
        return np.nan_to_num(ref / self.baseline_ms(stat), nan=0.0) > 1 + REFERENCE_BOUND_PCT / 100

    def latency_ms(self, table: pa.Table, stat: str = "min_ms", normalised: bool = True) -> np.ndarray:
        """``stat`` for each row of ``table`` (rows of this dataset), in ms: normalised (where the dataset is a
        duet) as the row's ratio to the reference in its own window, over its run's level (``levels``), times
        ``baseline_ms(stat)``; else raw."""
        raw = np.asarray(table.column(stat).to_pylist(), dtype=np.float64)
        if not (normalised and self.duet):
            return raw
        ref = np.asarray(table.column(f"ref_{stat}").to_pylist(), dtype=np.float64)
        levels = self.levels(stat)
        level = np.array([levels.get(r, 1.0) for r in table.column("run_id").to_pylist()], dtype=np.float64)
        return raw / ref / level * self.baseline_ms(stat)

    def anchors(self) -> list[int]:
        """The sample indices a later run re-times first (``ANCHORS``), as frozen in the header; none for a file
        frozen before anchors existed (``latkit dataset rebase`` names them) or too small to have them."""
        record = self.header.get("baseline")
        return list(record.get("anchors", [])) if isinstance(record, dict) else []

    def levels(self, stat: str = "min_ms") -> dict[str, float]:
        """run_id -> the run's level: the median, over the anchors it re-timed, of the anchor's ratio to the
        reference in this run over its ratio in the file's sample row. A run that re-timed none (the runs that
        made the unit) has level 1 and is left out."""
        kind, status = self.column("kind"), self.column("status")
        ok = status == "ok"
        ratio = self.column(stat).astype(np.float64) / self.column(f"ref_{stat}").astype(np.float64)
        index = self.column("index")
        first = {int(i): float(r) for i, r, k, good in zip(index, ratio, kind, ok) if k == "sample" and good}
        per_run: dict[str, list[float]] = {}
        for i, r, k, good, run in zip(index, ratio, kind, ok, self.column("run_id")):
            if k == "anchor" and good and int(i) in first and np.isfinite(r):
                per_run.setdefault(str(run), []).append(r / first[int(i)])
        return {run: float(np.median(v)) for run, v in per_run.items()}

    def samples(self, ok_only: bool = True) -> pa.Table:
        """The training rows: kind 'sample' and status 'ok'; with ``ok_only=False`` one row per sample index: its
        ok row if it has one (earlier error rows were superseded by a retry), else its last error row."""
        kind, status = self.column("kind"), self.column("status")
        if ok_only:
            return self.table.filter(pa.array((kind == "sample") & (status == "ok")))
        chosen: dict[tuple[int, int], int] = {}
        for i, key in enumerate(zip(self.column("seed").tolist(), self.column("index").tolist())):
            if kind[i] == "sample" and (key not in chosen or status[chosen[key]] != "ok"):
                chosen[key] = i
        return self.table.take(pa.array(sorted(chosen.values()), type=pa.int64()))


def _load(path: Path) -> tuple[Dataset, _Journal]:
    j = _read_journal(path)
    if j.header is not None:
        j.header = upgrade(j.header)
    if path.exists():
        header, table = _read_parquet(path)
        header = upgrade(header)
        if j.header is not None and header_diff(header, j.header, with_environment=False):
            raise DatasetError(f"{path}: journal belongs to another campaign "
                               f"({', '.join(header_diff(header, j.header))})")
    elif j.header is not None:
        header, table = j.header, _table([])
    elif j.rows:
        raise DatasetError(f"{journal_path(path)}: rows without a header line; cannot tell what they were "
                           "measured with")
    else:
        raise DatasetError(f"{path}: no such dataset")
    check_header(header, path)
    runs = {**j.runs, **header.get("runs", {})}
    if runs:
        header = dict(header, runs=runs)
    if j.rows:
        table = pa.concat_tables([table, _table(j.rows)])
    rejected = rejected_path(path)
    set_aside = rejected.read_bytes().count(b"\n") if rejected.exists() else 0
    ds = Dataset(path, header, _dedupe(table), tuple(n for n, _ in j.bad), j.torn[0] if j.torn else None, set_aside)
    return ds, j


def load(path: str | Path) -> Dataset:
    """Read a dataset file together with its journal (rows measured since the last compaction)."""
    return _load(Path(path))[0]


def write(path: str | Path, header: dict[str, Any], table: pa.Table) -> None:
    """Atomically (re)write a dataset file: temp file, fsync, rename, fsync the directory."""
    header = dict(upgrade(header), version=FORMAT_VERSION)  # the rows are written with every column of this version
    schema = SCHEMA.with_metadata({META_KEY: json.dumps(header, sort_keys=True).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table.cast(SCHEMA).replace_schema_metadata(schema.metadata), tmp, compression="zstd")


def _fold(path: Path, ds: Dataset, journal: _Journal, header: dict[str, Any]) -> int:
    """Write ``ds`` (``path``'s file and journal, loaded) back as one Parquet file with ``header`` and remove the
    journal; its unreadable lines go to ``FILE.journal.rejected`` (returns how many)."""
    jp = journal_path(path)
    try:
        set_aside = _set_aside(path, journal)
        write(path, header, ds.table)
    except OSError as exc:  # a full disk, a file system remounted read-only
        safe = (f"its rows are safe in {jp}: make room, then rerun to fold them in" if jp.exists() else
                "its rows are safe in it (a run that ends with room to write freezes its unit)")
        raise DatasetError(f"cannot write {path} ({exc.strerror or exc}); {safe}") from None
    jp.unlink(missing_ok=True)
    return set_aside


@dataclass
class Writer:
    """Appends rows crash-safely; ``compact`` folds the journal into the Parquet file; ``close`` compacts and
    releases the file's lock. ``run`` (this run's provenance, id ``run_id``) is recorded before its first row, and so
    is each run ``add_run`` names (a Ray campaign's workers: one run each, so every row's host and CPUs are known)."""

    path: Path
    header: dict[str, Any]
    compact_every: int = 50
    lock: WriterLock | FileLock | None = None
    run_id: str | None = None
    run: dict[str, Any] | None = None
    freeze: bool = True  # freeze the file's unit at close if no run has (not a shard's: its merge does)
    dropped_line: int | None = None  # a torn last journal line cut off when this writer opened the file
    set_aside: int = 0  # unreadable journal lines this writer's compactions moved to FILE.journal.rejected
    _pending: int = field(default=0, init=False)
    _started: bool = field(default=False, init=False)  # has written to the current journal
    _runs: dict[str, dict[str, Any]] = field(default_factory=dict, init=False)  # provenance to record

    def __post_init__(self) -> None:
        if self.run is not None:
            self.add_run(str(self.run_id), self.run)

    def add_run(self, run_id: str, run: dict[str, Any]) -> None:
        """Record run ``run_id``'s provenance with the first row written after this call."""
        self._runs[run_id] = run

    def append(self, row: dict[str, Any]) -> None:
        jp = journal_path(self.path)
        new = not jp.exists()
        records: list[dict[str, Any]] = []
        if not self._started and (new or _read_journal(self.path).header is None):
            records.append({"header": self.header})
        for run_id, run in self._runs.items():
            if run_id not in self.header.get("runs", {}):
                records.append({"run": {"run_id": run_id, **run}})
                self.header = dict(self.header, runs={**self.header.get("runs", {}), run_id: run})
        records.append({"row": row})
        size = 0 if new else jp.stat().st_size
        try:
            with open(jp, "a", encoding="utf-8") as f:
                f.write("".join(json.dumps(r, allow_nan=True) + "\n" for r in records))
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:  # a full disk, a file system remounted read-only
            try:  # no torn line of this row left behind: the journal as it was (none if this made it)
                jp.unlink(missing_ok=True) if new else os.truncate(jp, size)
            except OSError:
                pass
            raise DatasetError(f"cannot append to {jp} ({exc.strerror or exc}): every row of {self.path} written "
                               "before is safe in it or in the file; make room, then rerun to resume") from None
        if new:
            fsync_dir(jp.parent)
        self._started = True
        self._pending += 1
        if self._pending >= self.compact_every:
            self.compact()

    def compact(self, freeze: bool = False) -> None:
        """Fold the journal into the Parquet file; its unreadable lines are kept in ``FILE.journal.rejected``. With
        ``freeze``, freeze the file's unit in the same write if no run has yet (``Dataset.baseline_record``)."""
        jp = journal_path(self.path)
        if not jp.exists() and not (freeze and self.path.exists()):
            return
        ds, journal = _load(self.path)
        record = ds.baseline_record() if freeze and not ds.frozen else None
        if record is None and not jp.exists():
            return
        self.set_aside += _fold(self.path, ds, journal, ds.header if record is None else dict(ds.header,
                                                                                               baseline=record))
        self._pending = 0
        self._started = False

    def close(self) -> None:
        """Compact and freeze the file's unit if no run has yet (unless ``freeze`` is off), then release the lock
        (also when that fails)."""
        try:
            self.compact(freeze=self.freeze)
        finally:
            if self.lock is not None:
                self.lock.release()

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_writer(path: str | Path, header: dict[str, Any], force: bool = False, run_id: str | None = None,
                run: dict[str, Any] | None = None, freeze: bool = True) -> tuple[Writer, Dataset | None]:
    """A writer for ``path`` holding its lock (a second writer gets a DatasetError); if ``path`` exists, check it
    belongs to the same campaign (``force`` relaxes only the environment) and return what it holds. A symlink writes
    the file it links to."""
    path = real_path(check_out_path(path))
    lock = _lock(path)
    try:
        existing = None
        journal = _read_journal(path)
        if path.exists() or journal.header is not None or journal.rows:
            existing = load(path)
            diff = header_diff(existing.header, upgrade(header), with_environment=not force)
            held, asked = protocol_name(existing.header), protocol_name(header)
            if "protocol" in diff and held != asked:
                raise DatasetError(f"{path} holds rows measured with the {held} protocol, this run measures with the "
                                   f"{asked} protocol (duet: each architecture timed beside the reference); measure "
                                   f"into another --out, or resume it with its own protocol"
                                   + (" (latkit measure --solo; latkit bench without --reference)"
                                      if held == "solo" else ""))
            if diff:
                hint = "" if any(not d.startswith("environment.") for d in diff) else " (--force continues anyway)"
                raise DatasetError(f"{path} was measured with a different {', '.join(diff)}; use another --out{hint}")
            header = existing.header
        dropped = _end_with_full_line(path)
    except BaseException:
        lock.release()
        raise
    return Writer(path, header, lock=lock, run_id=run_id, run=run, freeze=freeze, dropped_line=dropped), existing


@dataclass(frozen=True)
class MergeResult:
    """What ``merge`` did."""

    rows: int  # rows written
    duplicates: int  # rows dropped because the same row (kind, seed, index, run_id, timestamp) was already in
    superseded: int  # error sample rows dropped because their (seed, index) has an ok row
    conflicts: int  # ok sample rows dropped because an earlier input already had an ok row for their (seed, index)
    max_conflict_pct: float  # the largest |min_ms - kept min_ms| / kept min_ms among conflicts, in % (0 if none)
    runs: int  # runs with recorded provenance in the output
    unreadable: int  # unreadable journal lines in the inputs (not merged; the inputs keep them)
    baseline_ms: float | None = None  # the output's frozen baseline (min_ms), None for a solo file
    rebased: bool = False  # whether it was computed from the merged rows (else an input's was kept)


def _merge_rows(table: pa.Table) -> tuple[list[int], dict[str, Any]]:
    """Rows to keep: the first of exact duplicates; per (seed, index) the first ok sample row, which supersedes
    its error rows wherever they are; error rows of samples without an ok row."""
    kind, seed, index, status, min_ms = (table.column(c).to_pylist() for c in ("kind", "seed", "index", "status",
                                                                                 "min_ms"))
    seen: set[tuple[Any, ...]] = set()
    ok_row: dict[tuple[int, int], int] = {}
    candidates: list[int] = []
    counts: dict[str, Any] = {"duplicates": 0, "superseded": 0, "conflicts": 0, "max_conflict_pct": 0.0}
    for i, row_key in enumerate(zip(*(table.column(c).to_pylist() for c in ROW_KEY))):
        if row_key in seen:
            counts["duplicates"] += 1
            continue
        seen.add(row_key)
        key = (seed[i], index[i])
        if kind[i] == "sample" and status[i] == "ok":
            if key in ok_row:
                counts["conflicts"] += 1
                kept = min_ms[ok_row[key]]
                if kept and min_ms[i] is not None:
                    counts["max_conflict_pct"] = max(counts["max_conflict_pct"], 100 * abs(min_ms[i] - kept) / kept)
                continue
            ok_row[key] = i
        candidates.append(i)
    keep = [i for i in candidates if not (kind[i] == "sample" and status[i] != "ok" and (seed[i], index[i]) in ok_row)]
    counts["superseded"] = len(candidates) - len(keep)
    return keep, counts


def merge(paths: Iterable[str | Path], out: str | Path, force: bool = False, rebase: bool = False) -> MergeResult:
    """Join shards into ``out`` (locked while written). Headers must agree; ``force`` relaxes only the environment.
    ``out`` may be one of the inputs, but an existing ``out`` that is not is refused (it would be overwritten).
    Inputs whose frozen baselines differ are in different units: refused, unless ``rebase`` (the output's baseline
    is then the live one of all its rows, as it is when no input has one frozen)."""
    paths, out = [Path(p) for p in paths], real_path(check_out_path(out))
    if not paths:
        raise DatasetError("nothing to merge")
    lock = _lock(out)
    try:
        inputs = {p.resolve() for p in paths}
        if (out.exists() or journal_path(out).exists()) and out.resolve() not in inputs:
            raise DatasetError(f"{out} already exists and is not an input; merge into a new file or list it as an "
                               "input")
        loaded = [_load(p) for p in paths]
        first = loaded[0][0]
        for ds, _ in loaded[1:]:
            diff = header_diff(first.header, ds.header, with_environment=not force)
            if diff:
                hint = "" if any(not d.startswith("environment.") for d in diff) else " (--force merges anyway)"
                raise DatasetError(f"{ds.path} differs from {first.path} in {', '.join(diff)}{hint}")
        frozen = {ds.path: ds.baseline_ms() for ds, _ in loaded if ds.frozen}
        if len(set(frozen.values())) > 1 and not rebase:
            (a, ms_a) = next(iter(frozen.items()))
            (b, ms_b) = next((p, v) for p, v in frozen.items() if v != ms_a)
            raise DatasetError(f"{a} and {b} are in different units (frozen baselines {ms_a:.6g} and {ms_b:.6g} ms "
                               "min_ms): merge with --rebase (one baseline from all the merged rows), or re-base "
                               "them first (latkit dataset rebase)")
        table = pa.concat_tables([ds.table for ds, _ in loaded])
        keep, counts = _merge_rows(table)
        runs: dict[str, dict[str, Any]] = {}
        for ds, _ in loaded:
            for run_id, run in ds.runs.items():
                runs.setdefault(run_id, run)
        header = {k: v for k, v in first.header.items() if k != "baseline"}
        header["merged_from"] = [p.name for p in paths]
        if runs:
            header["runs"] = runs
        merged = Dataset(out, header, table.take(keep))
        record = (next(ds for ds, _ in loaded if ds.frozen).header["baseline"] if frozen and not rebase
                  else merged.baseline_record())
        if record is not None:
            header["baseline"] = record
        try:
            write(out, header, merged.table)
        except OSError as exc:  # a full disk, a read-only file system
            raise DatasetError(f"cannot write {out} ({exc.strerror or exc}); the inputs are unchanged") from None
        for p, (_, journal) in zip(paths, loaded):
            if p.resolve() == out.resolve() and journal_path(out).exists():  # its rows are in the new file now
                _set_aside(out, journal)
                journal_path(out).unlink()
    finally:
        lock.release()
    return MergeResult(rows=len(keep), runs=len(runs), unreadable=sum(ds.unreadable_lines for ds, _ in loaded),
                       baseline_ms=record["ms"]["min_ms"] if record else None,
                       rebased=bool(record) and (rebase or not frozen), **counts)


def rebase(path: str | Path) -> tuple[float, float]:
    """Re-base a duet file: freeze the live baseline of all its rows in its header (locked; the journal folded in).
    Returns (old, new) baseline in ms of min_ms: normalised latencies move by new / old; predictors fitted on the
    file before keep the old unit (their ``baseline_ms``)."""
    path = real_path(path)
    lock = _lock(path)
    try:
        ds, journal = _load(path)
        record = ds.baseline_record()
        if record is None:
            raise DatasetError(f"{path} has no duet window to re-base on (a solo file, or no ok row): its "
                               "latencies are raw")
        old = ds.baseline_ms()
        _fold(path, ds, journal, dict(ds.header, baseline=record))
    finally:
        lock.release()
    return old, record["ms"]["min_ms"]
