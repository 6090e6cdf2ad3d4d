"""benchmarks/torch_residual.py: which architectures it measures again, and their residuals."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from latkit.datasets.store import load
from latkit.errors import LatkitError
from latkit.predictors.fitting import dataset_xy
from latkit.predictors import make_predictor

from benchmarks import torch_residual

TORCH = str(Path(__file__).parents[1] / "datasets/torch_cpu_b1_r32_c36_l20.parquet")


def test_choose_ranks_by_the_residual_nearest_zero_among_files_that_agree_in_sign() -> None:
    a = {0: 3.0, 1: 2.0, 2: -4.0, 3: -1.0, 4: 5.0, 5: 0.5, 7: 9.0}
    b = {0: 1.0, 1: 2.0, 2: -2.0, 3: -3.0, 4: -1.0, 5: 0.5, 6: 9.0, 7: 0.1}  # 4: signs disagree; 6: not in a
    pos, neg, nearest = torch_residual.choose([a, b], 2)
    assert pos == [0, 1] and neg == [2, 3]  # 7's 9% in one file does not outrank it: its nearest is 0.1
    assert nearest[0] == 1.0 and nearest[3] == -1.0 and 4 not in nearest and 6 not in nearest
    with pytest.raises(LatkitError, match="only 4 positive and 2 negative"):
        torch_residual.choose([a, b], 3)
    with pytest.raises(LatkitError, match="per-side"):
        torch_residual.choose([a, b], 0)


def test_residuals_are_out_of_fold_and_only_for_undisturbed_rows() -> None:
    r, pred = torch_residual.residuals(TORCH)
    x, y, index, clean = dataset_xy(load(TORCH))
    assert set(r) == set(index[clean].tolist()) and len(pred) == len(index)
    fitted = make_predictor("cse")
    fitted.fit(x[clean], y[clean])
    in_sample = 100 * np.log(y[clean] / fitted.predict_ms(x[clean]))
    oof = np.array([r[i] for i in index[clean].tolist()])
    assert abs(oof.mean()) < 0.2 and oof.std() > in_sample.std() * 1.005  # a row's fit never saw it
    assert all(math.isfinite(p) and p > 0 for p in pred.values())
