"""benchmarks/duet_runs.py: the spread per window length, from hand-made windows."""
from __future__ import annotations


import pytest

from benchmarks import duet_runs


def test_summary_gives_each_window_length_its_own_spread() -> None:
    rows = [{"repeats": 30, "ratio": r, "min_ms": 100 * r, "window_s": 7.0} for r in (0.98, 1.0, 1.02)]
    rows += [{"repeats": 60, "ratio": r, "min_ms": 120.0 + i, "window_s": s}
             for i, (r, s) in enumerate(((1.0, 14.0), (1.0, 15.0), (1.0, 13.0)))]
    rows += [{"repeats": 30, "fresh": True, "ratio": r, "min_ms": 100.0, "window_s": 7.5} for r in (0.9, 1.1)]
    short, fresh, long = duet_runs.summarise(rows)
    assert (fresh["fresh"], fresh["windows"], short["fresh"]) == (True, 2, False)
    assert fresh["ratio_cv_pct"] == pytest.approx(100 * 0.2 / 2 ** 0.5)
    assert (short["repeats"], short["windows"], long["repeats"]) == (30, 3, 60)
    assert short["ratio_cv_pct"] == pytest.approx(2.0) and short["raw_cv_pct"] == pytest.approx(2.0)
    assert long["ratio_cv_pct"] == 0.0 and long["raw_cv_pct"] == pytest.approx(100 / 121)
    assert short["window_s"] == 7.0 and long["window_s"] == 14.0
