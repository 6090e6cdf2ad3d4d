"""The dataset format: crash-safe appends, resume, merge, validation and quality figures."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from latkit.datasets.quality import drift, noise_floor, summary, validate
from latkit.datasets.store import (FORMAT, FORMAT_VERSION, DatasetError, journal_path, load, merge, open_writer)
from latkit.space import sample

HEADER = {"format": FORMAT, "version": FORMAT_VERSION, "backend": "fake", "device": "cpu",
          "config": {"batch": 1}, "protocol": {"repeats": 3}, "seed": 0, "sampler_version": 1,
          "environment": {"cpu": "X"}}


def row(index: int, median: float, kind: str = "sample", status: str = "ok", seed: int = 0) -> dict:
    g = str(sample(seed, max(index, 0)))
    stats = {"median_ms": median, "mean_ms": median, "std_ms": 0.0, "min_ms": median * 0.9, "p10_ms": median * 0.95,
             "p90_ms": median * 1.1, "iqm_ms": median}
    if status != "ok":
        stats = {k: None for k in stats}
    return {"kind": kind, "seed": seed, "index": index, "genotype": g, "backend": "fake", "device": "cpu", "batch": 1,
            "resolution": 32, "channels": 36, "layers": 20, **stats, "n": 3, "status": status,
            "error": "" if status == "ok" else "RuntimeError: boom", "timestamp": f"t{index}{kind}",
            "run_id": "r"}


def test_append_load_compact(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    writer, existing = open_writer(path, HEADER)
    assert existing is None
    for i in range(3):
        writer.append(row(i, 10.0 + i))
    assert not path.exists() and load(path).table.num_rows == 3  # all in the journal so far
    writer.compact()
    assert path.exists() and not journal_path(path).exists()
    writer.append(row(3, 13.0))
    ds = load(path)
    assert ds.table.column("index").to_pylist() == [0, 1, 2, 3] and ds.header == HEADER


def test_torn_journal_line_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    writer, _ = open_writer(path, HEADER)
    writer.append(row(0, 1.0))
    with open(journal_path(path), "a") as f:
        f.write('{"row": {"kind": "sam')  # a crash mid-write
    assert load(path).table.num_rows == 1


def test_compaction_crash_leaves_no_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    writer, _ = open_writer(path, HEADER)
    writer.append(row(0, 1.0))
    saved = journal_path(path).read_text()
    writer.compact()
    journal_path(path).write_text(saved)  # as if killed after the replace, before the journal was removed
    assert load(path).table.num_rows == 1


def test_resume_refuses_another_campaign(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    writer, _ = open_writer(path, HEADER)
    writer.append(row(0, 1.0))
    with pytest.raises(DatasetError, match="different protocol"):
        open_writer(path, dict(HEADER, protocol={"repeats": 5}))
    other_env = dict(HEADER, environment={"cpu": "Y"})
    with pytest.raises(DatasetError, match="environment.cpu.*--force"):
        open_writer(path, other_env)
    _, existing = open_writer(path, other_env, force=True)
    assert existing is not None and existing.table.num_rows == 1


def _dataset(path: Path, rows: list[dict], header: dict = HEADER) -> Path:
    writer, _ = open_writer(path, header)
    for r in rows:
        writer.append(r)
    writer.compact()
    return path


def test_merge_shards(tmp_path: Path) -> None:
    a = _dataset(tmp_path / "a.parquet", [row(0, 1.0), row(2, 3.0)])
    b = _dataset(tmp_path / "b.parquet", [row(1, 2.0), row(2, 3.5)])
    rows, dropped = merge([a, b], tmp_path / "m.parquet")
    assert (rows, dropped) == (3, 1)
    assert sorted(load(tmp_path / "m.parquet").table.column("index").to_pylist()) == [0, 1, 2]
    c = _dataset(tmp_path / "c.parquet", [row(3, 1.0)], dict(HEADER, environment={"cpu": "Y"}))
    with pytest.raises(DatasetError, match="environment.cpu"):
        merge([a, c], tmp_path / "m2.parquet")
    assert merge([a, c], tmp_path / "m2.parquet", force=True) == (3, 0)


def test_quality_figures_by_hand(tmp_path: Path) -> None:
    rows = [row(0, 10.0), row(1, 20.0), row(2, 5.0, status="error"),
            row(0, 11.0, kind="repeat"), row(1, 19.0, kind="repeat"),
            row(-1, 4.0, kind="reference"), row(-1, 4.4, kind="reference"), row(-1, 3.8, kind="reference")]
    for i, r in enumerate(rows):
        r["timestamp"] = str(i)
    ds = load(_dataset(tmp_path / "q.parquet", rows))
    nf = noise_floor(ds)
    assert nf["pairs"] == 2 and nf["mape_pct"] == pytest.approx(7.5)  # (10% + 5%) / 2
    d = drift(ds)
    assert d["timings"] == 3 and d["median_ms"] == 4.0 and d["max_dev_pct"] == pytest.approx(10.0)
    s = summary(ds)
    assert (s["samples"], s["samples_ok"], s["failures"], s["repeats"]) == (3, 2, 1, 2)
    assert s["latency_ms"]["max"] == 20.0
    validate(ds.path)


def test_validate_rejects_corrupt_and_foreign_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"PAR1 not really")
    with pytest.raises(DatasetError, match="not a readable Parquet file"):
        validate(junk)
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), foreign)
    with pytest.raises(DatasetError, match="not a latkit latency dataset"):
        validate(foreign)
    with pytest.raises(DatasetError, match="no such dataset"):
        validate(tmp_path / "missing.parquet")
    bad = row(1, 2.0)
    bad["genotype"] = str(sample(0, 5))
    with pytest.raises(DatasetError, match=r"row 0: genotype is not sample\(seed=0, index=1\)"):
        validate(_dataset(tmp_path / "t.parquet", [bad]))
    dup = [row(1, 2.0), dict(row(1, 2.0), timestamp="other")]
    with pytest.raises(DatasetError, match="appears twice"):
        validate(_dataset(tmp_path / "dup.parquet", dup))
    inconsistent = dict(row(0, 2.0), min_ms=3.0)
    with pytest.raises(DatasetError, match="inconsistent"):
        validate(_dataset(tmp_path / "inc.parquet", [inconsistent]))
    meta = json.loads(pq.read_schema(tmp_path / "t.parquet").metadata[b"latkit"])
    assert meta["backend"] == "fake"
