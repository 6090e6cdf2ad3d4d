"""benchmarks/duet_leak.py: the share of the host's change a duet file's ratio keeps, on hand-made duet files."""
from __future__ import annotations

from pathlib import Path

import pytest

from latkit.datasets.quality import noise_floor
from latkit.datasets.store import load
from test_datasets import HEADER, _dataset, row

from benchmarks import duet_leak


HOST = [1.2, 0.9, 1.1, 1.3, 0.8, 1.05]  # the host's speed factor in each repeat's window


def _duet(index: int, ms: float, ref_ms: float, kind: str = "sample") -> dict:
    """A duet row: the architecture's times, its reference's, and the min's ratio to the reference's min."""
    r = row(index, ms, kind=kind)
    stats = ("median_ms", "mean_ms", "min_ms", "p10_ms", "p90_ms", "iqm_ms")
    r.update({f"ref_{c}": ref_ms * r[c] / ms for c in stats}, ref_std_ms=0.0, ratio=r["min_ms"] / (ref_ms * 0.9))
    return r


def _file(tmp_path: Path, name: str, ref_moves: bool) -> Path:
    """Six architectures measured twice; the repeat's window runs HOST times slower, the reference too or not."""
    rows = [_duet(i, 10.0 + i, 5.0) for i in range(len(HOST))]
    rows += [_duet(i, (10.0 + i) * h, 5.0 * h if ref_moves else 5.0, "repeat") for i, h in enumerate(HOST)]
    return _dataset(tmp_path / name, rows, dict(HEADER, protocol={"repeats": 3, "duet": True}))


def test_a_reference_that_moves_with_the_host_keeps_none_of_it(tmp_path: Path) -> None:
    ds = load(_file(tmp_path, "cancelled.parquet", ref_moves=True))
    r = duet_leak.leak(ds)
    assert r["pairs"] == len(HOST)
    assert r["slope"] == pytest.approx(0.0, abs=1e-12) and r["leak"] == pytest.approx(0.0, abs=1e-12)
    assert r["norm_pct"] == pytest.approx(noise_floor(ds, "min_ms")["single_mape_pct"], abs=1e-9)
    assert r["raw_pct"] == pytest.approx(noise_floor(ds, "min_ms", normalised=False)["single_mape_pct"])


def test_a_reference_that_stays_put_keeps_all_of_it(tmp_path: Path) -> None:
    ds = load(_file(tmp_path, "leaky.parquet", ref_moves=False))
    r = duet_leak.leak(ds)
    assert r["slope"] == pytest.approx(1.0)  # the normalised change is the raw one
    assert r["leak"] == pytest.approx(0.5)  # k (1 - k / 2) for a leak k = 1: the estimator is for small leaks
    assert r["norm_pct"] == pytest.approx(noise_floor(ds, "min_ms")["single_mape_pct"])


def test_too_few_pairs_is_an_error(tmp_path: Path) -> None:
    path = _dataset(tmp_path / "one.parquet", [_duet(0, 10.0, 5.0), _duet(0, 11.0, 5.0, "repeat")],
                    dict(HEADER, protocol={"repeats": 3, "duet": True}))
    with pytest.raises(ValueError, match="1 re-measured pair"):
        duet_leak.leak(load(path))
