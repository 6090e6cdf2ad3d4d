"""Choosing which architectures to measure: reproducible, distinct, and the diverse design informs a fit more."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from latkit.cli import main
from latkit.datasets.store import load
from latkit.errors import LatkitError
from latkit.predictors.transfer import op_groups
from latkit.selection import select_indices
from latkit.space import encode_many, sample


def _information(seed: int, indices: list[int]) -> float:
    """log det of F'F + I over the op-group features (what a D-optimal design maximises)."""
    f = np.column_stack([np.ones(len(indices)), encode_many(sample(seed, i) for i in indices) @ op_groups()])
    return float(np.linalg.slogdet(f.T @ f + np.eye(f.shape[1]))[1])


def test_selections_are_reproducible_distinct_and_in_the_pool() -> None:
    for method in ("random", "diverse"):
        chosen = select_indices(0, 20, method, pool=400)
        assert chosen == select_indices(0, 20, method, pool=400) and chosen == sorted(set(chosen))
        assert len(chosen) == 20 and all(0 <= i < 400 for i in chosen)
    assert select_indices(0, 5) == [0, 1, 2, 3, 4]
    with pytest.raises(LatkitError, match="from a pool of 10"):
        select_indices(0, 20, "random", pool=10)


def test_the_diverse_design_carries_more_information_than_random_draws() -> None:
    diverse = _information(0, select_indices(0, 20, "diverse", pool=400))
    draws = [_information(0, sorted(np.random.default_rng(s).choice(400, 20, replace=False).tolist()))
             for s in range(10)]
    assert diverse > max(draws)


def test_measure_selects(tmp_path: Path) -> None:
    out = tmp_path / "d.parquet"
    assert main(["measure", "--backend", "torch", "--count", "3", "--select", "diverse", "--pool", "50",
                 "--layers", "3", "--channels", "4", "--resolution", "8", "--repeats", "2", "--warmup-runs", "0",
                 "--warmup-ms", "0", "--repeat-every", "0", "--reference-every", "0", "--out", str(out)]) == 0
    t = load(out).table
    assert sorted(t.column("index").to_pylist()) == select_indices(0, 3, "diverse", pool=50)


def test_a_pool_too_large_to_hold_is_one_line_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import latkit.selection as selection

    monkeypatch.setattr(selection, "sample", lambda *a: pytest.fail("sampled a candidate"))
    with pytest.raises(LatkitError, match=r"a pool of 100000000000 candidates is more than diverse selection draws "
                                          r"from \(at most 100000\)"):
        select_indices(0, 2, "diverse", pool=100_000_000_000)
    with pytest.raises(LatkitError, match=r"more than random selection draws from \(at most 10000000\)"):
        select_indices(0, 2, "random", pool=10**8)
    with pytest.raises(LatkitError, match=r"cannot select 200000 architectures from a pool of 100000 \(a diverse "
                                          "pool holds at most 100000\\)"):
        select_indices(0, 200_000, "diverse")  # the default pool, 20 x 200 000, is bounded too
