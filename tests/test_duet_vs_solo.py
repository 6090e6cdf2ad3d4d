"""benchmarks/duet_vs_solo.py: a contention the encoding cannot see shows as residuals anti-correlated with solo/duet."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import COSTS
from latkit.space import encode, sample
from test_datasets import HEADER, _dataset, row

from benchmarks import duet_vs_solo


N = 1000
TRUE_MS = 2.0 + np.stack([encode(sample(0, i)) for i in range(N)]) @ COSTS  # additive: a table can hold it
CONTENTION = np.random.default_rng(1).uniform(-0.03, 0.03, N)  # what timing beside DARTS_V2 adds, per architecture
HOST = np.random.default_rng(2).choice([1.0, 1.0, 1.0, 1.25], N)  # the host's speed in each duet window


def _row(index: int, min_ms: float, duet: bool, host: float = 1.0) -> dict:
    r = row(index, host * min_ms / 0.9)  # row() sets min_ms to 0.9 x its median
    if duet:  # the reference (min 4.5 ms) slows with the host: the normalised latency is min_ms, the raw one is not
        r.update({f"ref_{c}": 4.5 * host * r[c] / r["min_ms"] for c in ("median_ms", "mean_ms", "min_ms", "p10_ms",
                                                                          "p90_ms", "iqm_ms")}, ref_std_ms=0.0,
                 ratio=r["min_ms"] / (4.5 * host))
    return r


def test_contention_the_encoding_cannot_see_is_found(tmp_path: Path) -> None:
    duet = _dataset(tmp_path / "duet.parquet", [_row(i, TRUE_MS[i] * (1 + CONTENTION[i]), True, HOST[i])
                                                for i in range(N)], dict(HEADER, protocol={"repeats": 3, "duet": True}))
    solo = _dataset(tmp_path / "solo.parquet", [_row(i, 1.1 * TRUE_MS[i], False) for i in range(2, N, 2)])
    c = duet_vs_solo.compare(str(duet), str(solo), "additive")
    assert c["architectures"] == N // 10  # the held-out ones (index % 5 == 4) of the solo file's even indices
    assert c["corr_lo"] < c["corr"] < c["corr_hi"]
    assert c["corr"] < -0.7  # the residual is mostly the contention, and solo/duet its negative
    assert c["vs_solo_pct"] < 0.6 * c["vs_duet_pct"]  # the predictor is closer to the times without it


def test_a_solo_file_as_the_duet_one_is_refused(tmp_path: Path) -> None:
    solo = _dataset(tmp_path / "solo.parquet", [_row(i, 1.0, False) for i in range(10)])
    with pytest.raises(SystemExit, match="--duet must be a duet file"):
        duet_vs_solo.compare(str(solo), str(solo))
