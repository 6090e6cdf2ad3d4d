"""benchmarks/loss_forms.py: grouping over seeds and the additive curve at a matched latency (no timing)."""
from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import loss_forms


def _genotype(form: str, setting: str, seed: int, acc: float, ratio: float) -> dict:
    return {"name": f"x:{setting}/seed{seed}", "genotype": "g", "test_accuracy": acc,
            "source": {"file": f"{form}/sweep.json", "form": form, "target_ms": None, "setting": setting, "seed": seed},
            "min_ms": {"onnxruntime": ratio * 20}, "ratio_to_darts_v2": {"onnxruntime": ratio}}


def test_matched_latency(tmp_path: Path) -> None:
    doc = {"backends": ["onnxruntime"], "genotypes": [
        {"name": "DARTS_V2", "genotype": "g", "test_accuracy": None, "source": {}},
        _genotype("additive", "lambda=0", 0, 0.96, 1.1), _genotype("additive", "lambda=0", 1, 0.98, 1.3),
        _genotype("additive", "lambda=2", 0, 0.97, 0.4), _genotype("additive", "lambda=2", 1, 0.99, 0.6),
        _genotype("log", "lambda=4", 0, 0.95, 0.8), _genotype("log", "lambda=4", 1, 0.97, 0.9),
        _genotype("log", "lambda=9", 0, 0.95, 0.2)]}
    points = {(p["form"], p["setting"]): p for p in loss_forms.groups(doc, "onnxruntime")}
    assert set(points) == {("none (lambda=0)", "lambda=0"), ("additive", "lambda=2"), ("log", "lambda=4"),
                           ("log", "lambda=9")}
    log4 = points[("log", "lambda=4")]
    assert log4["n"] == 2 and log4["seeds"] == [0, 1]
    assert log4["acc"] == pytest.approx(96.0) and log4["ratio"] == pytest.approx(0.85)
    assert log4["acc_std"] == pytest.approx(2 ** 0.5)
    curve = [points[("none (lambda=0)", "lambda=0")], points[("additive", "lambda=2")]]  # (1.2, 97), (0.5, 98)
    assert loss_forms.additive_at(curve, 0.85)[0] == pytest.approx(97.5)
    assert loss_forms.additive_at(curve, 0.2) is None  # faster than any additive point: no comparison
    assert loss_forms.additive_at(curve, 0.4)[:2] == pytest.approx((98.0, 2 ** 0.5))  # within lambda=2's latency std
    assert loss_forms.additive_at(curve, 0.4)[2].startswith("lambda=2")
    text = loss_forms.table(loss_forms.groups(doc, "onnxruntime"), "onnxruntime")
    assert "| log | lambda=4 | 0,1 | 96.00 +- 1.41 | 0.850 +- 0.071 | 97.50 | -1.50 (-1.1 std) |" in text
    assert "outside the additive range" in text
    assert loss_forms.plot(loss_forms.groups(doc, "onnxruntime"), tmp_path / "f.png", "onnxruntime").stat().st_size
