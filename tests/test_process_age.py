"""benchmarks/process_age.py: a duet file whose first minutes run fast shows it in all three views."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from latkit.datasets.store import open_writer
from latkit.space import encode, op_groups, sample
from test_datasets import HEADER, row

from benchmarks import process_age


N = 1200
START = datetime(2026, 11, 28, 5, 0, tzinfo=timezone.utc)
TRUE_MS = 5.0 + np.stack([encode(sample(0, i)) for i in range(N)]) @ op_groups() @ np.linspace(0.1, 0.6, 28)
DUET = dict(HEADER, protocol={"repeats": 3, "duet": True})


def _row(index: int, kind: str, minute: float, early_factor: float, noise: float) -> dict:
    """A duet row ``minute`` minutes into the run; its normalised latency is ``early_factor`` lower in the first 4."""
    ms = (TRUE_MS[index] if index >= 0 else 10.0) * (early_factor if minute < 4 else 1.0) * noise
    r = row(max(index, 0), ms / 0.9, kind=kind, run_id="run1")  # row() sets min_ms to 0.9 x its median
    r.update({f"ref_{c}": 4.5 for c in ("median_ms", "mean_ms", "min_ms", "p10_ms", "p90_ms", "iqm_ms")},
             ref_std_ms=0.0, ratio=r["min_ms"] / 4.5, index=index,
             timestamp=(START + timedelta(minutes=minute)).isoformat())
    return r


def _file(path: Path, early_factor: float) -> Path:
    rng = np.random.default_rng(0)
    writer, _ = open_writer(path, DUET, run_id="run1", run={"started": START.isoformat(), "cpus": [0]})
    for i in range(N):
        minute = i * 0.025  # 30 minutes in all
        writer.append(_row(i, "sample", minute, early_factor, np.exp(rng.normal(0, 0.002))))
        if i % 10 == 9:
            j = int(rng.integers(0, i))
            writer.append(_row(j, "repeat", minute, early_factor, np.exp(rng.normal(0, 0.002))))
        if i % 40 == 0:
            writer.append(_row(-1, "reference", minute, early_factor, 1.0))
    writer.close()
    return path


def test_a_fast_start_shows_in_pairs_self_timings_and_offsets(tmp_path: Path) -> None:
    r = process_age.age(str(_file(tmp_path / "early.parquet", 0.98)))
    assert r["pair_drift_pct"] > 5 * r["pair_drift_se_pct"] > 0  # repeats come later in the run: slower
    assert r["self_early_late_pct"] == pytest.approx(-0.8, abs=0.05)  # 4 of its 10 first-10-minute timings are fast
    fast = 160 / 1200  # the rows of the first 4 minutes; offsets are against the rows' mean
    assert r["offsets_pct"][0] == pytest.approx(-2 * (1 - fast), abs=0.15)  # 0-2 min
    assert r["offsets_pct"][6] == pytest.approx(2 * fast, abs=0.15)  # 25-40 min
    assert np.isnan(r["offsets_pct"][7:]).all()  # no rows after 30 minutes
    assert r["mape_with_age_pct"] < 0.5 * r["mape_pct"]  # the bins take the step out of the fit
    table = process_age.markdown([r]).splitlines()
    assert len(table) == 3 and table[2].count("|") == table[0].count("|") and "/ - / - |" in table[2]


def test_a_steady_file_shows_none(tmp_path: Path) -> None:
    r = process_age.age(str(_file(tmp_path / "steady.parquet", 1.0)))
    assert abs(r["pair_drift_pct"]) < 3 * r["pair_drift_se_pct"]
    assert abs(r["self_early_late_pct"]) < 0.1 and max(abs(o) for o in r["offsets_pct"][:6]) < 0.1


def test_a_missing_file_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["process_age.py", str(tmp_path / "none.parquet")])
    with pytest.raises(SystemExit, match="no such dataset"):
        process_age.main()


def test_a_solo_file_is_refused(tmp_path: Path) -> None:
    writer, _ = open_writer(tmp_path / "solo.parquet", HEADER)
    writer.append(row(0, 1.0))
    writer.close()
    with pytest.raises(SystemExit, match="solo file"):
        process_age.age(str(tmp_path / "solo.parquet"))
