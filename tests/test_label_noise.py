"""benchmarks/label_noise.py: two measurements of the same architectures split a predictor's error into its own and
each file's label noise."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import COSTS
from latkit.datasets.store import load
from latkit.predictors.fitting import dataset_xy, split
from latkit.predictors import make_predictor
from latkit.space import encode, sample
from test_datasets import HEADER, _dataset, row

from benchmarks import label_noise


N = 1500
TRUE_MS = 2.0 + np.stack([encode(sample(0, i)) for i in range(N)]) @ COSTS
STRUCTURE = np.exp(np.random.default_rng(1).normal(0, 0.03, N))  # per architecture, in both files: no table holds it
DUET = dict(HEADER, protocol={"repeats": 3, "duet": True})


def _file(path: Path, noise_sd: float, seed: int, unit: float = 1.0) -> Path:
    """A duet file of every architecture: the true latency x STRUCTURE x its own noise, in a unit of its own."""
    noise = np.exp(np.random.default_rng(seed).normal(0, noise_sd, N))
    rows = []
    for i in range(N):
        r = row(i, unit * TRUE_MS[i] * STRUCTURE[i] * noise[i] / 0.9)  # row() sets min_ms to 0.9 x its median
        r.update({f"ref_{c}": 4.5 for c in ("median_ms", "mean_ms", "min_ms", "p10_ms", "p90_ms", "iqm_ms")},
                 ref_std_ms=0.0, ratio=r["min_ms"] / 4.5)
        rows.append(r)
    return _dataset(path, rows, DUET)


def test_the_model_error_and_each_files_noise_are_recovered(tmp_path: Path) -> None:
    a = _file(tmp_path / "a.parquet", 0.01, 2)
    b = _file(tmp_path / "b.parquet", 0.025, 3, unit=1.05)  # another day's unit: a constant in logs
    c = label_noise.compare(str(a), str(b), "additive")
    assert c["architectures"] == N // 5
    # the predictor's own error, known here: the same fit, against the true latency times the structure
    x, y, index, clean = dataset_xy(load(a))
    train, test = split(index, clean)
    p = make_predictor("additive")
    p.fit(x[train], y[train], 0)
    truth = TRUE_MS[index[test]] * STRUCTURE[index[test]]
    own = 100 * np.log(truth / p.predict_ms(x[test])).std(ddof=1)
    assert c["model_sd_pct"][0] == pytest.approx(own, rel=0.1)
    for key, expected in {"a_noise_sd_pct": 1.0, "b_noise_sd_pct": 2.5, "model_sd_pct": own}.items():
        point, low, high = c[key]
        assert low <= expected <= high and low <= point <= high, (key, c[key])
    assert c["b_noise_sd_pct"][0] == pytest.approx(2.5, rel=0.15)
    assert c["a_vs_b_sd_pct"] == pytest.approx(np.hypot(1.0, 2.5), rel=0.15)  # the structure cancels between files


def test_files_of_different_shapes_are_refused(tmp_path: Path) -> None:
    a = _file(tmp_path / "a.parquet", 0.01, 2)
    other = dict(DUET, config=dict(DUET["config"], batch=8))
    b = _dataset(tmp_path / "b.parquet", [dict(row(i, 1.0), batch=8) for i in range(30)], other)
    with pytest.raises(SystemExit, match="different backends, devices, shapes"):
        label_noise.compare(str(a), str(b))


def test_pair_noise_counts_undisturbed_pairs_only(tmp_path: Path) -> None:
    rows = []
    for i, (first, second, cpu) in enumerate([(10.0, 10.1, 99.0), (20.0, 19.8, 99.0), (30.0, 45.0, 50.0)]):
        for kind, ms in (("sample", first), ("repeat", second)):
            r = row(i, ms / 0.9, kind=kind)
            r.update({f"ref_{c}": 4.5 for c in ("median_ms", "mean_ms", "min_ms", "p10_ms", "p90_ms", "iqm_ms")},
                     ref_std_ms=0.0, ratio=r["min_ms"] / 4.5, timing_ms=100.0, timing_cpu_ms=cpu)
            rows.append(r)
    path = _dataset(tmp_path / "p.parquet", rows, dict(DUET, protocol={"repeats": 3, "duet": True, "min_cpu_share": 0.9}))
    sd, pairs = label_noise.pair_sd_pct(load(path))
    assert pairs == 2  # the third pair's loops got half a core
    assert sd == pytest.approx(100 * np.std([np.log(1.01), np.log(0.99)], ddof=1) / np.sqrt(2))
