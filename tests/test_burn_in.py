"""benchmarks/burn_in.py: a low start that only the arm without a burn-in has shows as the paired difference."""
from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from latkit.datasets.store import open_writer
from latkit.errors import LatkitError
from test_datasets import row
from test_process_age import DUET, START, TRUE_MS

from benchmarks import burn_in


COUNT = 120  # and 24 DARTS_V2 timings, 3 s apart: 7.2 minutes of measuring


def _file(path: Path, burn_in_s: float, seed: int, level: float = 1.0) -> Path:
    """A run file: a row every 3 s from the end of its burn-in; 1% low while the process is under 3 minutes old, and
    ``level`` times the latency throughout (the level each process sets)."""
    rng = np.random.default_rng(seed)
    writer, _ = open_writer(path, DUET, run_id="r", run={"started": START.isoformat(), "burn_in_s": burn_in_s})
    for n in range(COUNT + COUNT // 5):
        index = -1 if n % 6 == 0 else n - n // 6 - 1
        minute = burn_in_s / 60 + n * 0.05
        ms = (TRUE_MS[index] if index >= 0 else 10.0) * (0.99 if minute < 3 else 1.0) * level \
            * np.exp(rng.normal(0, 0.001))
        r = row(max(index, 0), ms / 0.9, kind="reference" if index < 0 else "sample", run_id="r")
        r.update({f"ref_{c}": 4.5 for c in ("median_ms", "mean_ms", "min_ms", "p10_ms", "p90_ms", "iqm_ms")},
                 ref_std_ms=0.0, ratio=r["min_ms"] / 4.5, index=index,
                 timestamp=(START + timedelta(minutes=minute)).isoformat())
        writer.append(r)
    writer.close()
    return path


def _cells(line: str) -> list[float | None]:
    return [None if c.strip(" |") == "-" else float(c.strip(" |")) for c in line.split(" | ")[2:]]


def test_the_low_start_shows_only_without_the_burn_in(tmp_path: Path) -> None:
    pairs = [(burn_in.rows(_file(tmp_path / f"0_{k}.parquet", 0.0, 2 * k)),
              burn_in.rows(_file(tmp_path / f"180_{k}.parquet", 180.0, 2 * k + 1, level=1.0 + 0.01 * k)))
             for k in (1, 2)]
    lines = burn_in.paired(pairs).splitlines()
    d1, without1, with1 = _cells(lines[2]), _cells(lines[3]), _cells(lines[4])
    assert d1[:3] == pytest.approx([-2.0] * 3, abs=0.1)  # minutes 0-3: 1% low start and the other run 1% higher
    assert d1[3:6] == pytest.approx([-1.0] * 3, abs=0.1) and d1[6:] == [None, None]  # after: the level alone
    assert without1[0] == pytest.approx(-1.5, abs=0.1) and with1[0] == pytest.approx(0.5, abs=0.1)  # measured
    # from the first row: the burnt-in run's first minute is its process's fourth, already level
    summary = [float(v) for v in re.findall(r"-?\d+\.\d+", lines[-1])]  # pair 1, pair 2, mean, se
    assert summary[:3] == pytest.approx([-1.0] * 3, abs=0.1) and 0 <= summary[3] < 0.1
    with pytest.raises(LatkitError, match="at least one pair"):
        burn_in.paired([])
