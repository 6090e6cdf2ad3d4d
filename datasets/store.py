"""The latency dataset format: one Parquet file per backend and configuration, one row per timing.

Rows have a ``kind``: ``sample`` (architecture ``index`` of sampling campaign ``seed``: the training data),
``repeat`` (an independent re-measurement of an earlier sample: gives the noise floor) and ``reference`` (the fixed
reference architecture re-timed every K samples: shows drift). Every latency column is in milliseconds;
``timing_ms`` and ``timing_cpu_ms`` are the timed loop's wall and thread-CPU time (their ratio shows how much the
measuring thread was descheduled by other work on the machine); ``attempts`` counts the timed loops run before
one got enough of a core (see ``MeasureProtocol.min_cpu_share``).

The file's schema metadata (key ``latkit``) holds the header: backend, device, network config, protocol, seed and
the environment fingerprint. Writing is crash-safe: each row is appended and fsync'd to ``FILE.journal`` (JSON lines)
and folded into the Parquet file by an atomic replace every few rows and at the end; a reader sees both, so
``kill -9`` loses at most the architecture in flight.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from latkit.errors import LatkitError

FORMAT = "latkit-latency-dataset"
FORMAT_VERSION = 1
META_KEY = b"latkit"
KINDS = ("sample", "repeat", "reference")
STATUSES = ("ok", "error")
STAT_COLUMNS = ("median_ms", "mean_ms", "std_ms", "min_ms", "p10_ms", "p90_ms", "iqm_ms")
STAGE_COLUMNS = ("build_ms", "prepare_ms", "warmup_ms", "timing_ms", "timing_cpu_ms")
SCHEMA = pa.schema(
    [("kind", pa.string()), ("seed", pa.int64()), ("index", pa.int64()), ("genotype", pa.string()),
     ("backend", pa.string()), ("device", pa.string()), ("batch", pa.int64()), ("resolution", pa.int64()),
     ("channels", pa.int64()), ("layers", pa.int64())]
    + [(c, pa.float64()) for c in STAT_COLUMNS] + [("n", pa.int64())]
    + [(c, pa.float64()) for c in STAGE_COLUMNS] + [("attempts", pa.int64())]
    + [("status", pa.string()), ("error", pa.string()), ("timestamp", pa.string()), ("run_id", pa.string())]
)
COLUMNS = tuple(SCHEMA.names)
# Header keys that must agree for rows to belong in one file; "environment" must agree too unless forced.
IDENTITY_KEYS = ("backend", "device", "config", "protocol", "seed", "sampler_version")


class DatasetError(LatkitError):
    """A dataset file that is missing, corrupt, foreign or incompatible."""


def journal_path(path: Path) -> Path:
    return path.with_name(path.name + ".journal")


def header_diff(a: dict[str, Any], b: dict[str, Any], with_environment: bool = True) -> list[str]:
    """Header keys whose values differ (environment keys reported one by one)."""
    keys = [k for k in IDENTITY_KEYS if a.get(k) != b.get(k)]
    if with_environment:
        env_a, env_b = a.get("environment", {}), b.get("environment", {})
        keys += [f"environment.{k}" for k in sorted(set(env_a) | set(env_b)) if env_a.get(k) != env_b.get(k)]
    return keys


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
    except json.JSONDecodeError:
        raise DatasetError(f"{path}: corrupt latkit metadata") from None
    if header.get("format") != FORMAT or header.get("version") != FORMAT_VERSION:
        raise DatasetError(f"{path}: format {header.get('format')!r} v{header.get('version')}, "
                           f"expected {FORMAT!r} v{FORMAT_VERSION}")
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}")
    return header, table.select(list(COLUMNS)).cast(SCHEMA)


def _read_journal(path: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Header and rows of a journal; a torn last line (a crash mid-write) is dropped."""
    jp = journal_path(path)
    if not jp.exists():
        return None, []
    header, rows = None, []
    with open(jp, encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # torn write
            if "header" in record:
                header = record["header"]
            elif "row" in record:
                rows.append(record["row"])
    return header, rows


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist([{c: r.get(c) for c in COLUMNS} for r in rows], schema=SCHEMA)


def _dedupe(table: pa.Table) -> pa.Table:
    """Drop exact duplicate rows (a crash between a compaction's replace and its journal reset)."""
    seen, keep = set(), []
    for i, row in enumerate(zip(*(table.column(c).to_pylist() for c in ("kind", "seed", "index", "run_id",
                                                                         "timestamp")))):
        if row not in seen:
            seen.add(row)
            keep.append(i)
    return table.take(keep) if len(keep) < table.num_rows else table


@dataclass
class Dataset:
    """A loaded dataset: header plus all rows (Parquet and journal)."""

    path: Path
    header: dict[str, Any]
    table: pa.Table

    def column(self, name: str) -> np.ndarray:
        return self.table.column(name).to_numpy(zero_copy_only=False)

    def samples(self, ok_only: bool = True) -> pa.Table:
        """The training rows: kind 'sample' (and status 'ok')."""
        mask = np.asarray(self.column("kind") == "sample")
        if ok_only:
            mask &= np.asarray(self.column("status") == "ok")
        return self.table.filter(pa.array(mask))


def load(path: str | Path) -> Dataset:
    """Read a dataset file together with its journal (rows measured since the last compaction)."""
    path = Path(path)
    jheader, jrows = _read_journal(path)
    if path.exists():
        header, table = _read_parquet(path)
        if jheader is not None and header_diff(header, jheader, with_environment=False):
            raise DatasetError(f"{path}: journal belongs to another campaign ({', '.join(header_diff(header, jheader))})")
    elif jheader is not None:
        header, table = jheader, _table([])
    else:
        raise DatasetError(f"{path}: no such dataset")
    if jrows:
        table = pa.concat_tables([table, _table(jrows)])
    return Dataset(path, header, _dedupe(table))


def write(path: str | Path, header: dict[str, Any], table: pa.Table) -> None:
    """Atomically (re)write a dataset file: temp file, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    schema = SCHEMA.with_metadata({META_KEY: json.dumps(header, sort_keys=True).encode()})
    pq.write_table(table.cast(SCHEMA).replace_schema_metadata(schema.metadata), tmp, compression="zstd")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass
class Writer:
    """Appends rows crash-safely; ``compact`` folds the journal into the Parquet file."""

    path: Path
    header: dict[str, Any]
    compact_every: int = 50
    _pending: int = field(default=0, init=False)

    def append(self, row: dict[str, Any]) -> None:
        jp = journal_path(self.path)
        new = not jp.exists()
        with open(jp, "a", encoding="utf-8") as f:
            if new:
                f.write(json.dumps({"header": self.header}) + "\n")
            f.write(json.dumps({"row": row}, allow_nan=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._pending += 1
        if self._pending >= self.compact_every:
            self.compact()

    def compact(self) -> None:
        jp = journal_path(self.path)
        if not jp.exists():
            return
        ds = load(self.path)
        write(self.path, ds.header if self.path.exists() else self.header, ds.table)
        jp.unlink()
        self._pending = 0


def open_writer(path: str | Path, header: dict[str, Any], force: bool = False) -> tuple[Writer, Dataset | None]:
    """A writer for ``path``; if it exists, check it belongs to the same campaign and return what it holds."""
    path = Path(path)
    if not path.exists() and not journal_path(path).exists():
        return Writer(path, header), None
    existing = load(path)
    diff = header_diff(existing.header, header, with_environment=not force)
    if diff:
        hint = "" if any(not d.startswith("environment.") for d in diff) else " (--force continues anyway)"
        raise DatasetError(f"{path} was measured with a different {', '.join(diff)}; use another --out{hint}")
    return Writer(path, existing.header), existing


def merge(paths: Iterable[str | Path], out: str | Path, force: bool = False) -> tuple[int, int]:
    """Join shards into ``out``; refuses different headers unless ``force``. Returns (rows, duplicates dropped)."""
    datasets = [load(p) for p in paths]
    if not datasets:
        raise DatasetError("nothing to merge")
    first = datasets[0]
    for ds in datasets[1:]:
        diff = header_diff(first.header, ds.header, with_environment=True)
        if diff and not force:
            raise DatasetError(f"{ds.path} differs from {first.path} in {', '.join(diff)} (--force merges anyway)")
    table = pa.concat_tables([ds.table for ds in datasets])
    seen: set[tuple[int, int]] = set()
    keep = []
    for i, (kind, seed, index) in enumerate(zip(*(table.column(c).to_pylist() for c in ("kind", "seed", "index")))):
        if kind == "sample":
            if (seed, index) in seen:
                continue
            seen.add((seed, index))
        keep.append(i)
    header = dict(first.header, merged_from=[ds.path.name for ds in datasets])
    write(out, header, table.take(keep))
    return len(keep), table.num_rows - len(keep)
