"""benchmarks/burn_in.py: a low start that only the arm without a burn-in has shows as the paired difference."""
from __future__ import annotations

import importlib.util
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from latkit.datasets.store import open_writer
from latkit.errors import LatkitError
from test_datasets import row
from test_process_age import DUET, START, TRUE_MS

spec = importlib.util.spec_from_file_location("burn_in", Path(__file__).parents[1] / "benchmarks/burn_in.py")
burn_in = importlib.util.module_from_spec(spec)
spec.loader.exec_module(burn_in)

COUNT = 120  # 3 s apart: 6 minutes of measuring


def _file(path: Path, burn_in_s: float, seed: int) -> Path:
    """A run file: a row every 3 s from the end of its burn-in; 1% low while the process is under 3 minutes old."""
    rng = np.random.default_rng(seed)
    writer, _ = open_writer(path, DUET, run_id="r", run={"started": START.isoformat(), "burn_in_s": burn_in_s})
    for n in range(COUNT + COUNT // 5):
        index = -1 if n % 6 == 0 else n - n // 6 - 1
        minute = burn_in_s / 60 + n * 0.05
        ms = (TRUE_MS[index] if index >= 0 else 10.0) * (0.99 if minute < 3 else 1.0) * np.exp(rng.normal(0, 0.001))
        r = row(max(index, 0), ms / 0.9, kind="reference" if index < 0 else "sample", run_id="r")
        r.update({f"ref_{c}": 4.5 for c in ("median_ms", "mean_ms", "min_ms", "p10_ms", "p90_ms", "iqm_ms")},
                 ref_std_ms=0.0, ratio=r["min_ms"] / 4.5, index=index,
                 timestamp=(START + timedelta(minutes=minute)).isoformat())
        writer.append(r)
    writer.close()
    return path


def test_the_low_start_shows_only_without_the_burn_in(tmp_path: Path) -> None:
    runs = [burn_in.rows(_file(tmp_path / f"{b}_{k}.parquet", b, k)) for k in (1, 2) for b in (0.0, 180.0)]
    text = burn_in.paired(runs, 180.0)
    cells = text.splitlines()[2].split(" | ")[1:]
    means = [float(c.split(" ")[0]) if c.strip(" |") != "-" else None for c in cells]
    assert means[:3] == pytest.approx([-1.0] * 3, abs=0.1)  # minutes 0-3: the arm without a burn-in is low
    assert means[3:6] == pytest.approx([0.0] * 3, abs=0.1) and cells[6].strip(" |") == "-"  # no row past 6 min
    no_burn = text.splitlines()[3].split(" | ")[1:]
    assert float(no_burn[0].split(" ")[0]) == pytest.approx(-1.0, abs=0.1)  # DARTS_V2 low at first too
    assert "without minus with burn-in -1.0" in text
    with pytest.raises(LatkitError, match="each arm"):
        burn_in.paired(runs[::2], 180.0)
