"""The dataset format: crash-safe appends, resume, merge, validation and quality figures."""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from latkit.cli import main
from latkit.datasets import shipped, store
from latkit.datasets.quality import drift, journal_warnings, noise_floor, summary, validate
from latkit.datasets.store import (FORMAT, FORMAT_VERSION, DatasetError, journal_path, load, merge,
                                   open_writer, rejected_path, write)
from latkit.space import sample

HEADER = {"format": FORMAT, "version": FORMAT_VERSION, "backend": "fake", "device": "cpu",
          "config": {"batch": 1, "resolution": 32, "channels": 36, "layers": 20}, "protocol": {"repeats": 3, "duet": False},
          "seed": 0, "sampler_version": 1,
          "environment": {"cpu": "X"}}


def row(index: int, median: float, kind: str = "sample", status: str = "ok", seed: int = 0,
        run_id: str = "r") -> dict:
    g = str(sample(seed, max(index, 0)))
    stats = {"median_ms": median, "mean_ms": median, "std_ms": 0.0, "min_ms": median * 0.9, "p10_ms": median * 0.95,
             "p90_ms": median * 1.1, "iqm_ms": median}
    if status != "ok":
        stats = {k: None for k in stats}
    return {"kind": kind, "seed": seed, "index": index, "genotype": g, "backend": "fake", "device": "cpu", "batch": 1,
            "resolution": 32, "channels": 36, "layers": 20, **stats, "n": 3, "status": status,
            "error": "" if status == "ok" else "RuntimeError: boom", "timestamp": f"t{index}{kind}",
            "run_id": run_id}


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
    ds = load(path)
    assert ds.table.num_rows == 1
    assert (ds.torn_line, ds.bad_lines, ds.unreadable_lines) == (3, (), 1)  # counted, not silently dropped
    validate(path)  # a torn tail is what kill -9 leaves: a warning, not a fault
    assert journal_warnings(ds) == [f"{journal_path(path)}: line 3 is a partial last line (a write cut short by a "
                                    "crash: the architecture in flight); the next run cuts it off and measures that "
                                    "architecture again"]


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
    writer.close()  # a writer holds the file's lock until it closes
    with pytest.raises(DatasetError, match="different protocol"):
        open_writer(path, dict(HEADER, protocol={"repeats": 5}))
    other_env = dict(HEADER, environment={"cpu": "Y"})
    with pytest.raises(DatasetError, match="environment.cpu.*--force"):
        open_writer(path, other_env)
    _, existing = open_writer(path, other_env, force=True)
    assert existing is not None and existing.table.num_rows == 1


def _table_of(rows: list[dict]) -> "pa.Table":
    import pyarrow as pa

    from latkit.datasets.store import COLUMNS, SCHEMA

    return pa.Table.from_pylist([{c: r.get(c) for c in COLUMNS} for r in rows], schema=SCHEMA)


def _dataset(path: Path, rows: list[dict], header: dict = HEADER) -> Path:
    writer, _ = open_writer(path, header)
    for r in rows:
        writer.append(r)
    writer.close()
    return path


def test_merge_shards(tmp_path: Path) -> None:
    a = _dataset(tmp_path / "a.parquet", [row(0, 1.0), row(2, 3.0)])
    b = _dataset(tmp_path / "b.parquet", [row(1, 2.0), row(2, 3.5)])
    result = merge([a, b], tmp_path / "m.parquet")
    assert (result.rows, result.duplicates) == (3, 1)
    assert sorted(load(tmp_path / "m.parquet").table.column("index").to_pylist()) == [0, 1, 2]
    c = _dataset(tmp_path / "c.parquet", [row(3, 1.0)], dict(HEADER, environment={"cpu": "Y"}))
    with pytest.raises(DatasetError, match="environment.cpu"):
        merge([a, c], tmp_path / "m2.parquet")
    result = merge([a, c], tmp_path / "m2.parquet", force=True)
    assert (result.rows, result.duplicates) == (3, 0)


def test_quality_figures_by_hand(tmp_path: Path) -> None:
    rows = [row(0, 10.0), row(1, 20.0), row(2, 5.0, status="error"),
            row(0, 11.0, kind="repeat"), row(1, 19.0, kind="repeat"),
            row(-1, 4.0, kind="reference"), row(-1, 4.4, kind="reference"), row(-1, 3.8, kind="reference")]
    for i, r in enumerate(rows):
        r["timestamp"] = str(i)
    ds = load(_dataset(tmp_path / "q.parquet", rows))
    nf = noise_floor(ds)
    assert nf["pairs"] == 2 and nf["mape_pct"] == pytest.approx(7.5)  # (10% + 5%) / 2
    assert nf["single_mape_pct"] == pytest.approx(7.5 / math.sqrt(2))  # one measurement's noise
    d = drift(ds)
    assert d["timings"] == 3 and d["median_ms"] == 4.0 and d["max_dev_pct"] == pytest.approx(10.0)
    s = summary(ds)
    assert (s["samples"], s["samples_ok"], s["failures"], s["repeats"]) == (3, 2, 1, 2)
    assert s["latency_ms"]["max"] == 20.0
    validate(ds.path)


def test_noise_floor_outside_the_slow_windows_by_hand(tmp_path: Path) -> None:
    """Pairs whose both windows had the reference within the bound of its baseline, and the rest."""
    def duet(index: int, ms: float, ref_ms: float, kind: str = "sample") -> dict:
        r = row(index, ms, kind=kind)
        stats = ("median_ms", "mean_ms", "min_ms", "p10_ms", "p90_ms", "iqm_ms")
        r.update({f"ref_{c}": ref_ms * r[c] / ms for c in stats}, ref_std_ms=0.0, ratio=r["min_ms"] / (ref_ms * 0.9))
        return r

    fast = [duet(i, 10.0, 5.0) for i in range(12)]  # the baseline: the reference's 10th percentile, 4.5 ms (min)
    fast[3] = duet(3, 12.0, 6.0)  # a first measurement in a slow window: its pair is left out too
    rows = fast + [duet(0, 10.2, 5.0, "repeat"), duet(1, 9.9, 5.0, "repeat"),  # 2% and 1% in fast windows
                   duet(2, 14.0, 6.0, "repeat"),  # a slow window (reference 20% over): 40%*5/6 = 16.7% normalised
                   duet(3, 10.0, 5.0, "repeat")]  # fast again: 10/5 against 12/6, 0% normalised, still left out
    ds = load(_dataset(tmp_path / "d.parquet", rows, dict(HEADER, protocol={"repeats": 3, "duet": True})))
    assert ds.duet
    everything, fast_only = noise_floor(ds, "min_ms"), noise_floor(ds, "min_ms", unflagged=True)
    assert everything["pairs"] == 4 and fast_only["pairs"] == 2
    assert fast_only["mape_pct"] == pytest.approx(1.5)  # (2% + 1%) / 2
    assert everything["mape_pct"] == pytest.approx((2 + 1 + 100 * (14 / 6 / 2 - 1) + 0) / 4)
    assert summary(ds, "min_ms")["noise_floor_unflagged"]["pairs"] == 2


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


def _crash(writer: store.Writer) -> None:
    """What kill -9 leaves of a writer: its journal as written, no compaction, the lock gone with the process."""
    writer.lock.release()


def _record(r: dict) -> bytes:
    return (json.dumps({"row": r}) + "\n").encode()


def test_torn_write_then_appends_keep_every_row(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    writer, _ = open_writer(path, HEADER)
    writer.append(row(0, 1.0))
    with open(journal_path(path), "ab") as f:
        f.write(_record(row(1, 2.0))[:40])  # the crash cut this write short
    _crash(writer)
    writer, existing = open_writer(path, HEADER)
    writer.append(row(1, 2.0))  # the architecture in flight, measured again
    writer.append(row(2, 3.0))
    ds = load(path)
    assert ds.table.column("index").to_pylist() == [0, 1, 2] and ds.unreadable_lines == 0
    assert existing.torn_line == 3 and writer.dropped_line == 3  # reported, not silently dropped
    writer.close()
    assert load(path).table.column("index").to_pylist() == [0, 1, 2]
    validate(path)


def test_whole_last_record_without_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    writer, _ = open_writer(path, HEADER)
    writer.append(row(0, 1.0))
    with open(journal_path(path), "ab") as f:
        f.write(_record(row(1, 2.0))[:-1])  # cut just before its newline: the record itself is whole
    _crash(writer)
    writer, _ = open_writer(path, HEADER)
    assert writer.dropped_line is None
    writer.append(row(2, 3.0))
    writer.close()
    assert load(path).table.column("index").to_pylist() == [0, 1, 2]


def test_torn_header_line_starts_the_campaign_afresh(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    journal_path(path).write_text('{"header": {"format": "latkit')
    with pytest.raises(DatasetError, match="no such dataset"):
        load(path)
    writer, existing = open_writer(path, HEADER)
    assert existing is None
    writer.append(row(0, 1.0))
    assert load(path).header == HEADER
    writer.close()
    assert load(path).table.column("index").to_pylist() == [0]


def test_unreadable_middle_lines_are_counted_and_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "d.parquet"
    writer, _ = open_writer(path, HEADER)
    writer.append(row(0, 1.0))
    garbage = [b"\x00\x00garbage", _record(dict(row(5, 1.0), index="five"))[:-1]]  # not JSON; a mistyped row
    with open(journal_path(path), "ab") as f:
        f.write(b"".join(line + b"\n" for line in garbage))
    writer.append(row(1, 2.0))
    ds = load(path)
    assert ds.table.column("index").to_pylist() == [0, 1]
    assert (ds.bad_lines, ds.torn_line, ds.unreadable_lines) == ((3, 4), None, 2)
    assert "2 unreadable line(s) (line 3, 4)" in journal_warnings(ds)[0]
    with pytest.raises(DatasetError, match=r"d.parquet.journal: line 3 is not a readable journal record \(2 "):
        validate(path)
    assert main(["dataset", "validate", str(path)]) == 2
    assert "line 3" in capsys.readouterr().err
    assert main(["dataset", "info", str(path), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["unreadable_lines"] == 2
    assert captured.err.startswith("latkit: warning: ") and "2 unreadable line(s) (line 3, 4)" in captured.err
    writer.close()  # compaction keeps the unreadable lines beside the file, byte for byte
    assert writer.set_aside == 2
    assert rejected_path(path).read_bytes() == b"".join(line + b"\n" for line in garbage)
    ds = validate(path)
    assert ds.table.column("index").to_pylist() == [0, 1] and ds.set_aside == 2 and ds.unreadable_lines == 0
    assert main(["dataset", "validate", str(path)]) == 0
    assert "2 unreadable journal line(s) set aside" in capsys.readouterr().err


def test_a_second_writer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    first, _ = open_writer(path, HEADER)
    first.append(row(0, 1.0))
    with pytest.raises(DatasetError, match="d.parquet is being written by another latkit process; wait for it or "
                                           "use another --out"):
        open_writer(path, HEADER)
    with pytest.raises(DatasetError, match="being written by another latkit process"):
        merge([_dataset(tmp_path / "a.parquet", [row(1, 1.0)])], path)
    first.append(row(1, 2.0))
    first.close()
    second, existing = open_writer(path, HEADER)  # the lock goes with the writer
    assert existing.table.column("index").to_pylist() == [0, 1]
    second.close()


def test_writes_are_durable_in_the_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[Path] = []
    import latkit.atomic

    monkeypatch.setattr(store, "fsync_dir", synced.append)  # the journal's
    monkeypatch.setattr(latkit.atomic, "fsync_dir", synced.append)  # the atomic replace's
    path = tmp_path / "d.parquet"
    writer, _ = open_writer(path, HEADER)
    writer.append(row(0, 1.0))
    assert synced == [tmp_path]  # the new journal's directory entry
    writer.append(row(1, 1.0))
    assert synced == [tmp_path]
    writer.close()
    assert synced == [tmp_path, tmp_path]  # the atomic replace


def test_backend_options_are_part_of_the_identity(tmp_path: Path) -> None:
    legacy = _dataset(tmp_path / "v1.parquet", [row(0, 1.0)])  # as shipped: no backend_options, no runs
    assert "backend_options" not in load(legacy).header and load(legacy).runs == {}
    writer, existing = open_writer(legacy, dict(HEADER, backend_options={}))  # missing reads as {}
    writer.close()
    fp16 = dict(HEADER, backend_options={"precision": "fp16"})
    for force in (False, True):
        with pytest.raises(DatasetError, match=r"different backend_options; use another --out$"):
            open_writer(legacy, fp16, force=force)
    other = _dataset(tmp_path / "fp16.parquet", [row(1, 1.0)], fp16)
    with pytest.raises(DatasetError, match=r"in backend_options$"):
        merge([legacy, other], tmp_path / "m.parquet", force=True)


def test_shipped_datasets_read_v1_solo_and_v2_duet() -> None:
    for path in shipped():
        ds = load(path)
        assert (ds.header["version"], ds.duet) in ((1, False), (2, True))  # a v1 file is solo, a duet file v2
        assert ds.unreadable_lines == 0 and ds.table.num_rows > 0
        # every run that wrote rows keeps its own provenance (the one file written before it, torch's of issue 3,
        # was re-measured with the duet)
        assert ds.runs and set(ds.table.column("run_id").to_pylist()) <= set(ds.runs)


def test_merge_ok_row_wins_over_error_row_in_either_order(tmp_path: Path) -> None:
    failed = _dataset(tmp_path / "failed.parquet", [row(0, 0.0, status="error", run_id="a"), row(1, 2.0, run_id="a")])
    ok = _dataset(tmp_path / "ok.parquet", [row(0, 1.0, run_id="b")])
    for order in ([failed, ok], [ok, failed]):
        out = tmp_path / f"m_{order[0].stem}.parquet"
        result = merge(order, out)
        assert (result.rows, result.superseded, result.duplicates, result.conflicts) == (2, 1, 0, 0)
        ds = validate(out)
        assert sorted(zip(ds.table.column("index").to_pylist(), ds.table.column("status").to_pylist())) == \
            [(0, "ok"), (1, "ok")]
    only_failed = merge([failed, failed], tmp_path / "f.parquet")  # no ok row: the error row stays, once
    assert (only_failed.rows, only_failed.duplicates, only_failed.superseded) == (2, 2, 0)


def test_merge_reports_conflicting_ok_rows_and_keeps_the_first(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    a = _dataset(tmp_path / "a.parquet", [row(0, 1.0, run_id="a"), row(1, 2.0, run_id="a")])
    b = _dataset(tmp_path / "b.parquet", [row(0, 1.1, run_id="b"), row(1, 2.1, run_id="b"), row(2, 3.0, run_id="b")])
    result = merge([a, b], tmp_path / "m.parquet")
    assert (result.rows, result.conflicts, result.duplicates) == (3, 2, 0)
    assert result.max_conflict_pct == pytest.approx(10.0)  # min_ms 0.99 vs 0.9
    ds = validate(tmp_path / "m.parquet")
    assert ds.table.column("run_id").to_pylist() == ["a", "a", "b"]
    assert main(["dataset", "merge", str(b), str(a), "--out", str(tmp_path / "m2.parquet")]) == 0
    out = capsys.readouterr().out
    assert "3 rows from 2 files" in out and "2 conflicting ok rows dropped" in out
    assert "largest min_ms difference 9.09%" in out  # the first input's (b's) rows kept
    assert load(tmp_path / "m2.parquet").table.column("run_id").to_pylist() == ["b", "b", "b"]


def test_force_relaxes_only_the_environment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _dataset(tmp_path / "a.parquet", [row(0, 1.0)])
    for change in ({"protocol": {"repeats": 5}}, {"seed": 1}, {"device": "cuda"}, {"sampler_version": 2},
                   {"config": dict(HEADER["config"], batch=2)}):
        b = _dataset(tmp_path / f"b{next(iter(change))}.parquet", [row(1, 1.0)], dict(HEADER, **change))
        key = next(iter(change))
        with pytest.raises(DatasetError, match=f"in {key}$"):
            merge([a, b], tmp_path / "m.parquet", force=True)
        with pytest.raises(DatasetError, match=f"different {key}; use another --out$"):
            open_writer(a, dict(HEADER, **change), force=True)
    assert main(["dataset", "merge", str(a), str(tmp_path / "bprotocol.parquet"), "--out",
                 str(tmp_path / "m.parquet"), "--force"]) == 2
    err = capsys.readouterr().err
    assert "differs from" in err and "in protocol" in err and "--force" not in err
    assert not (tmp_path / "m.parquet").exists()


def test_merge_never_overwrites_a_dataset_that_is_not_an_input(tmp_path: Path) -> None:
    a = _dataset(tmp_path / "a.parquet", [row(0, 1.0)])
    b = _dataset(tmp_path / "b.parquet", [row(1, 1.0)])
    with pytest.raises(DatasetError, match="b.parquet already exists and is not an input"):
        merge([a], b)
    assert load(b).table.column("index").to_pylist() == [1]
    writer, _ = open_writer(b, HEADER)
    writer.append(row(2, 1.0))  # b has a journal too: merging into b folds it
    _crash(writer)
    assert merge([b, a], b).rows == 3
    assert not journal_path(b).exists()
    assert sorted(load(b).table.column("index").to_pylist()) == [0, 1, 2]


def test_runs_keep_their_provenance_through_resume_and_merge(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    run = {"environment": {"cpu": "X"}, "protocol": {"repeats": 3}, "cpus": [0], "host": "h", "started": "t"}
    writer, _ = open_writer(path, HEADER, run_id="a", run=run)
    writer.append(row(0, 1.0, run_id="a"))
    writer.close()
    other_env = dict(HEADER, environment={"cpu": "Y"})
    run_b = dict(run, environment={"cpu": "Y"}, cpus=[1])
    writer, _ = open_writer(path, other_env, force=True, run_id="b", run=run_b)
    writer.append(row(1, 1.0, run_id="b"))
    assert load(path).runs == {"a": run, "b": run_b}  # from the Parquet header and the journal's run record
    writer.close()
    ds = load(path)
    assert ds.runs == {"a": run, "b": run_b} and ds.header["environment"] == {"cpu": "X"}
    writer, _ = open_writer(tmp_path / "c.parquet", HEADER, run_id="c", run=dict(run, host="other"))
    writer.compact_every = 1  # the run is recorded once, before its first row, and survives compactions
    writer.append(row(2, 1.0, run_id="c"))
    writer.append(row(3, 1.0, run_id="c"))
    writer.close()
    assert journal_path(tmp_path / "c.parquet").exists() is False
    merged = tmp_path / "m.parquet"
    assert merge([path, tmp_path / "c.parquet"], merged, force=True).runs == 3
    assert load(merged).runs == {"a": run, "b": run_b, "c": dict(run, host="other")}


def test_validate_allows_error_rows_before_one_ok_row(tmp_path: Path) -> None:
    retried = [row(0, 0.0, status="error", run_id="a"), row(0, 0.0, status="error", run_id="b"),
               row(0, 1.0, run_id="c"), row(1, 0.0, status="error")]
    ds = validate(_dataset(tmp_path / "r.parquet", retried))
    assert ds.samples().column("index").to_pylist() == [0]
    latest = ds.samples(ok_only=False)
    assert list(zip(latest.column("index").to_pylist(), latest.column("run_id").to_pylist())) == [(0, "c"), (1, "r")]
    s = summary(ds)
    assert (s["samples"], s["samples_ok"], s["failures"], s["superseded"]) == (2, 1, 1, 2)
    late_error = [row(0, 1.0, run_id="a"), row(0, 0.0, status="error", run_id="b")]
    with pytest.raises(DatasetError, match="row 1: sample index 0 \\(seed 0\\) has an error row after its ok row"):
        validate(_dataset(tmp_path / "late.parquet", late_error))
    two_ok = [row(0, 0.0, status="error", run_id="a"), row(0, 1.0, run_id="b"), row(0, 1.0, run_id="c")]
    with pytest.raises(DatasetError, match="row 2: sample index 0 \\(seed 0\\) appears twice \\(two ok rows\\)"):
        validate(_dataset(tmp_path / "two.parquet", two_ok))


def test_summary_of_an_unknown_statistic_is_a_dataset_error(tmp_path: Path) -> None:
    ds = load(_dataset(tmp_path / "s.parquet", [row(0, 1.0)]))
    with pytest.raises(DatasetError, match="unknown statistic 'p99_ms'"):
        summary(ds, stat="p99_ms")


@pytest.mark.parametrize("change, message", [({"seed": 7}, "seed 7 differs from the file's seed 0"),
                                             ({"layers": 99}, "network .* differs from the file's config")])
def test_validate_refuses_a_row_that_disagrees_with_the_header(tmp_path: Path, change: dict, message: str) -> None:
    path = _dataset(tmp_path / "d.parquet", [row(0, 1.0), dict(row(1, 1.0), **change)])
    with pytest.raises(DatasetError, match=message):
        validate(path)


@pytest.mark.parametrize("header, message", [({k: v for k, v in HEADER.items() if k != "config"},
                                               "the header has no 'config'"),
                                              (dict(HEADER, seed="0"), "the header's 'seed' is a str"),
                                              (dict(HEADER, config={"batch": 1}), "config has no resolution")])
def test_a_header_without_its_keys_is_one_line_for_every_reader(tmp_path: Path, header: dict, message: str,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "h.parquet"
    write(path, header, _table_of([row(0, 1.0)]))
    with pytest.raises(DatasetError, match=message):
        load(path)
    for argv in (["dataset", "info", str(path)], ["dataset", "validate", str(path)],
                 ["fit", "--dataset", str(path), "--model", "additive", "--out", str(tmp_path / "p")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message.split("'")[0] in err


def test_metadata_that_is_not_an_object_is_one_line(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from latkit.datasets.store import META_KEY

    path = tmp_path / "list.parquet"
    pq.write_table(_table_of([row(0, 1.0)]).replace_schema_metadata({META_KEY: b"[1, 2]"}), path)
    with pytest.raises(DatasetError, match="corrupt latkit metadata \\(not an object\\)"):
        load(path)


def test_rewritten_files_keep_their_permissions(tmp_path: Path) -> None:
    import os
    import stat

    path = _dataset(tmp_path / "p.parquet", [row(0, 1.0)])
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # as any new file, not mkstemp's 0600
    path.chmod(0o640)
    writer, _ = open_writer(path, HEADER)
    writer.append(row(1, 1.0))
    writer.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_a_symlink_to_a_dataset_being_written_takes_the_same_lock(tmp_path: Path) -> None:
    real, link = tmp_path / "real.parquet", tmp_path / "link.parquet"
    link.symlink_to(real)
    first, _ = open_writer(real, HEADER)
    first.append(row(0, 1.0))
    with pytest.raises(DatasetError, match="real.parquet is being written by another latkit process"):
        open_writer(link, HEADER)  # the lock is the real file's, whatever name it is reached by
    with pytest.raises(DatasetError, match="being written by another latkit process"):
        merge([_dataset(tmp_path / "a.parquet", [row(1, 1.0)])], link)
    first.close()
    second, existing = open_writer(link, HEADER)  # through the link: the real file's journal, rows and lock
    assert existing.table.column("index").to_pylist() == [0]
    second.append(row(1, 1.0))
    assert journal_path(real).exists() and not (tmp_path / "link.parquet.journal").exists()
    second.close()
    assert link.is_symlink() and load(real).table.column("index").to_pylist() == [0, 1]
    assert not list(tmp_path.glob("*.lock"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the abstract-socket lock is Linux's")
def test_deleting_the_lock_file_under_a_writer_lets_no_second_one_in(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    first, _ = open_writer(path, HEADER)
    first.append(row(0, 1.0))
    store.lock_path(path).unlink()  # what a user tidying up might do
    (tmp_path / "linkdir").symlink_to(tmp_path)
    for other in (path, tmp_path / "linkdir" / "d.parquet", Path(os.path.relpath(path))):
        with pytest.raises(DatasetError, match="being written by another latkit process"):
            open_writer(other, HEADER)
    first.close()
    second, _ = open_writer(path, HEADER)  # released with the first writer
    second.close()
    assert load(path).table.column("index").to_pylist() == [0] and not store.lock_path(path).exists()


def test_the_lock_is_the_os_lock_and_its_file_goes_on_release(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    store.lock_path(path).write_text("left by a writer killed long ago")  # a stale lock file means nothing
    writer, _ = open_writer(path, HEADER)
    writer.append(row(0, 1.0))
    writer.close()
    assert not store.lock_path(path).exists()  # removed on a clean release
    with pytest.raises(DatasetError, match="different seed"):
        open_writer(path, dict(HEADER, seed=5))
    assert not store.lock_path(path).exists()  # a refused command leaves no lock file either
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DatasetError, match=f"cannot write {blocker}/x.parquet: {blocker} is a file, not a directory"):
        open_writer(blocker / "x.parquet", HEADER)


def test_a_name_that_is_not_utf8_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    import os

    path = Path(os.fsdecode(os.fsencode(tmp_path) + b"/\xff.parquet"))  # what the shell passes for $'\xff.parquet'
    with pytest.raises(DatasetError, match="the file name is not valid UTF-8, which a Parquet file needs"):
        open_writer(path, HEADER)
    assert not list(tmp_path.iterdir())


def test_a_writer_killed_in_its_final_write_leaves_nothing_behind_the_next_run(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "d.parquet"
    killed = f"""
import os
import pyarrow.parquet as pq
from latkit.datasets import store
real = pq.write_table
def write_and_die(*args, **kwargs):
    real(*args, **kwargs)
    os._exit(9)  # killed after the temporary file is written, before it replaces the dataset
pq.write_table = write_and_die
writer, _ = store.open_writer({str(path)!r}, {HEADER!r})
writer.append({row(0, 1.0)!r})
writer.close()
"""
    assert subprocess.run([sys.executable, "-c", killed]).returncode == 9
    assert [p.name for p in tmp_path.glob(".d.parquet.*.tmp")] and store.lock_path(path).exists()
    writer, existing = open_writer(path, HEADER)  # the dead writer's lock file holds nothing
    assert existing.table.column("index").to_pylist() == [0]  # its row, safe in the journal
    writer.append(row(1, 1.0))
    writer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.parquet"]  # no temporary, journal or lock left
    assert load(path).table.column("index").to_pylist() == [0, 1]


def test_a_full_or_read_only_disk_names_the_dataset_and_keeps_the_rows(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    path = tmp_path / "d.parquet"
    writer, _ = open_writer(path, HEADER)
    writer.append(row(0, 1.0))
    writer.append(row(1, 1.0))
    with monkeypatch.context() as m:
        m.setattr(store.pq, "write_table", full)
        with pytest.raises(DatasetError, match=rf"cannot write {path} \(No space left on device\); its rows are "
                                               rf"safe in {path}.journal: make room, then rerun to fold them in"):
            writer.close()
    assert not store.lock_path(path).exists()  # released all the same
    writer, _ = open_writer(path, HEADER)
    with monkeypatch.context() as m:
        m.setattr(store.os, "fsync", full)
        with pytest.raises(DatasetError, match=rf"cannot append to {path}.journal \(No space left on device\): "
                                               "every row of .* written before is safe"):
            writer.append(row(2, 1.0))
    writer.close()
    assert load(path).table.column("index").to_pylist()[:2] == [0, 1] and not journal_path(path).exists()


@pytest.mark.parametrize("change, message", [({"runs": "r"}, "the header's 'runs' is a str, not a dict"),
                                             ({"runs": {"r": ["x"]}}, "the header's run 'r' is a list, not a dict"),
                                             ({"config": dict(HEADER["config"], layers="20")},
                                              "the header's config 'layers' is '20', not an integer")])
def test_validate_and_info_read_one_header(tmp_path: Path, change: dict, message: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "h.parquet"
    write(path, dict(HEADER, **change), _table_of([row(0, 1.0)]))
    for argv in (["dataset", "validate", str(path)], ["dataset", "info", str(path)],
                 ["dataset", "info", str(path), "--datasheet"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "Traceback" not in err
    good = tmp_path / "g.parquet"  # a config without in_channels (HEADER's): what validate passes, info prints
    write(good, dict(HEADER, runs={"r": {"host": "h", "cpus": 3, "protocol": "p", "burn_in_s": "x"}}),
          _table_of([row(0, 1.0)]))
    for argv in (["dataset", "validate", str(good)], ["dataset", "info", str(good)],
                 ["dataset", "info", str(good), "--datasheet"]):
        assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "batch 1, ?x32x32, 20 layers" in out and "run r: 1 rows, host h, started ?, CPUs unknown, threads ?" in out


def test_a_journal_folded_in_while_it_is_read_loses_no_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "d.parquet"
    writer, _ = open_writer(path, HEADER)
    writer.append(row(0, 1.0))
    writer.compact()
    writer.append(row(1, 1.0))
    read_bytes = Path.read_bytes
    folded: list[bool] = []

    def fold_first(self: Path) -> bytes:
        if self == journal_path(path) and not folded:  # another process folds the journal in just now
            folded.append(True)
            writer.compact()
        return read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", fold_first)
    ds = load(path)
    assert folded and not journal_path(path).exists()
    assert ds.table.column("index").to_pylist() == [0, 1]
    writer.close()
