"""Predictors on a synthetic dataset whose latencies follow a known cost model (test data, never shipped)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from latkit.cli import main
from latkit.predictors import PredictorError, fit_dataset, list_predictors, load_predictor, make_predictor, metrics
from latkit.predictors import bench
from latkit.predictors.base import conformal_rel
from latkit.predictors.base import load_dir
from latkit.predictors.fitting import cross_conformal
from latkit.space import ENCODING_SIZE, PUBLISHED, encode, encode_many, sample

from conftest import COSTS, known_latency

def test_metrics_by_hand() -> None:
    m = metrics(np.array([10.0, 20.0, 40.0]), np.array([11.0, 19.0, 40.0]))
    assert m["mape_pct"] == pytest.approx(5.0) and m["within5_pct"] == pytest.approx(200 / 3)
    assert m["within10_pct"] == 100.0 and m["rmse_ms"] == pytest.approx(np.sqrt(2 / 3))
    assert m["spearman"] == pytest.approx(1.0) and m["kendall"] == pytest.approx(1.0)


def test_additive_recovers_an_additive_model() -> None:
    x = encode_many(sample(5, i) for i in range(800))
    y = 1.0 + x @ COSTS
    p = make_predictor("additive", ridge=1e-9)
    p.fit(x, y)
    test = encode_many(sample(6, i) for i in range(50))
    np.testing.assert_allclose(p.predict_ms(test), 1.0 + test @ COSTS, rtol=1e-6)


def test_groups_recover_a_cost_per_op_group_from_few_rows() -> None:
    from latkit.space import op_groups

    group_costs = np.random.default_rng(0).uniform(0.1, 2.0, op_groups().shape[1])
    x = encode_many(sample(5, i) for i in range(60))  # 60 rows: far too few for the 224-cost table
    p = make_predictor("groups", ridge=1e-9)
    p.fit(x, 1.0 + x @ op_groups() @ group_costs)
    test = encode_many(sample(6, i) for i in range(50))
    np.testing.assert_allclose(p.predict_ms(test), 1.0 + test @ op_groups() @ group_costs, rtol=1e-6)
    table = make_predictor("additive")
    table.fit(x, 1.0 + x @ op_groups() @ group_costs)
    assert metrics(1.0 + test @ op_groups() @ group_costs, table.predict_ms(test))["mape_pct"] > 1.0


@pytest.mark.parametrize("kind", list_predictors())
def test_fit_save_load_predict(kind: str, dataset: Path, tmp_path: Path) -> None:
    params = {"max_epochs": 60} if kind == "mlp" else {"n_estimators": 200} if kind == "xgboost" else {}
    predictor, held_out = fit_dataset(dataset, kind, **params)
    assert held_out["n"] == 300 and held_out["mape_pct"] < 10
    meta = predictor.meta
    assert meta["backend"] == "onnxruntime" and meta["training_size"] == 1200 and len(meta["dataset_hash"]) == 16
    saved = predictor.save(tmp_path / kind)
    doc = json.loads((saved / "predictor.json").read_text())
    assert doc["kind"] == kind and doc["meta"]["held_out"]["n"] == 300
    assert not list(saved.glob("*.pkl")) and not list(saved.glob("*.pt"))
    again = load_dir(saved)
    x = encode_many([PUBLISHED["DARTS_V2"], sample(0, 9)])
    np.testing.assert_allclose(again.predict_ms(x), predictor.predict_ms(x), rtol=1e-6)


@pytest.mark.parametrize("kind", ["mlp", "additive", "groups", "cse"])
def test_differentiable_predictors_give_gradients(kind: str) -> None:
    x = encode_many(sample(1, i) for i in range(300))
    p = make_predictor(kind, **({"max_epochs": 20} if kind == "mlp" else {}))
    p.fit(x, known_latency(x))
    w = torch.full((2, 14, 8), 1 / 8, requires_grad=True)
    ms = p.torch_ms(encode((w[0], w[1])))
    ms.backward()
    assert ms.item() > 0 and w.grad.abs().sum() > 0
    onehot = torch.from_numpy(encode(PUBLISHED["PC_DARTS"]))
    assert p.torch_ms(onehot).item() == pytest.approx(p.predict_ms(onehot.numpy()[None])[0], rel=1e-5)


def test_mlp_learns_an_interaction_the_additive_model_cannot(dataset: Path) -> None:
    _, additive = fit_dataset(dataset, "additive")
    _, deep_only = fit_dataset(dataset, "mlp", skip=False)
    _, default = fit_dataset(dataset, "mlp")
    assert deep_only["mape_pct"] < 0.95 * additive["mape_pct"]
    # the default starts from the ridge solution: never meaningfully worse than the additive model
    assert default["mape_pct"] < 1.05 * additive["mape_pct"]


def test_xgboost_is_not_differentiable() -> None:
    with pytest.raises(PredictorError, match="not differentiable"):
        make_predictor("xgboost").torch_ms(torch.zeros(ENCODING_SIZE))


def test_other_backend_is_refused_unless_forced(dataset: Path) -> None:
    predictor, _ = fit_dataset(dataset, "additive")
    predictor.check_target("onnxruntime", "cpu")
    for backend, device in (("torch", "cpu"), ("onnxruntime", "cuda")):
        with pytest.raises(PredictorError, match=f"fitted on onnxruntime/cpu latencies, not {backend}/{device}"):
            predictor.check_target(backend, device)
        with pytest.warns(UserWarning, match=f"fitted on onnxruntime/cpu latencies, not {backend}/{device}"):
            predictor.check_target(backend, device, force=True)


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(PredictorError, match="neither a predictor directory nor a backend"):
        load_predictor(str(tmp_path / "nothing"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "predictor.json").write_text("{")
    with pytest.raises(PredictorError, match="corrupt"):
        load_predictor(str(tmp_path / "bad"))
    with pytest.raises(PredictorError, match="unknown predictor"):
        make_predictor("gbdt")


def test_cli_fit_predict_bench(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")  # a narrow console must not break the summary (or its paths) across lines
    out = tmp_path / "add"
    assert main(["fit", "--dataset", str(dataset), "--model", "additive", "--out", str(out)]) == 0
    summary = capsys.readouterr().out
    assert "held-out 300: MAPE" in summary and f"-> {out}" in summary and summary.count("\n") == 1
    assert main(["predict", "--predictor", str(out), "DARTS_V2"]) == 0
    saved = load_dir(out)
    x = encode(PUBLISHED["DARTS_V2"])[None]
    expected = float(saved.predict_ms(x)[0])
    lo, hi = (float(v[0]) for v in saved.interval_ms(x))
    assert lo < expected < hi
    assert capsys.readouterr().out.strip() == (f"{expected:.3f} ms raw (additive predictor; 90% interval "
                                               f"{lo:.3f} - {hi:.3f} ms)")
    assert main(["predict", "--predictor", str(out), "DARTS_V2", "--no-interval"]) == 0
    assert capsys.readouterr().out.strip() == f"{expected:.3f} ms raw (additive predictor)"
    assert main(["predict", "--predictor", str(out), "NOT_A_GENOTYPE"]) == 2
    assert main(["bench", "predictors", "--dataset", str(dataset), "--models", "additive", "--sizes", "100,all",
                 "--seeds", "0,1", "--out", str(tmp_path / "bench")]) == 0
    table = (tmp_path / "bench" / "predictors.md").read_text()
    for size, seed in ((100, 0), (100, 1), (1200, 0), (1200, 1)):  # each size fitted with each seed
        assert f"| synthetic.parquet | additive | {size} | {seed} |" in table
    rows = json.loads((tmp_path / "bench" / "predictors.json").read_text())
    small = {r["seed"]: r["mape_pct"] for r in rows if r["train_size"] == 100}
    assert small[0] != small[1]  # another seed, another training subset
    clean = np.array([r["undisturbed"]["mape_pct"] for r in rows if r["train_size"] == 100])
    assert f"| synthetic.parquet | 100 | additive | 2 | {clean.mean():.2f} +- {clean.std(ddof=1):.2f} |" in table
    assert (tmp_path / "bench" / "learning_curve_synthetic.png").stat().st_size > 1000


def test_conformal_rel_by_hand() -> None:
    scores = np.arange(1, 11) / 10  # ten relative residuals 0.1 .. 1.0
    assert conformal_rel(scores, 0.9) == (1.0, 0.9)  # ceil(11 * 0.9) = 10th smallest
    assert conformal_rel(-scores, 0.5) == (0.6, 0.5)  # ceil(11 * 0.5) = 6th; the sign does not matter
    assert conformal_rel(scores[:9], 0.9) == (0.9, 0.9)  # 9 rows reach 90%: ceil(10 * 0.9) = 9th
    # 3 rows cannot give 90%: the largest, at the 75% it guarantees (the k-th of n+1 exchangeable scores)
    assert conformal_rel(scores[:3], 0.9) == (0.3, 0.75)


def test_interval_covers_its_level_on_new_architectures() -> None:
    """Latency with 5% multiplicative noise: the cross-conformal 90% interval covers 90% of unseen rows."""
    rng = np.random.default_rng(5)
    x = encode_many([sample(11, i) for i in range(2200)])
    y = known_latency(x) * (1 + 0.05 * rng.standard_normal(len(x)))
    interval = cross_conformal("additive", {}, x[:1200], y[:1200])
    p = make_predictor("additive")
    p.fit(x[:1200], y[:1200])
    p.meta["interval"] = interval
    lo, hi = p.interval_ms(x[1200:])
    coverage = np.mean((lo <= y[1200:]) & (y[1200:] <= hi))
    assert interval["level"] == 0.9 and 0.08 < interval["rel"] < 0.16  # 1.645 sigma of the noise, plus the misfit
    assert 0.86 <= coverage <= 0.94


def test_predictor_without_interval_says_refit(dataset: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    p, held_out = fit_dataset(dataset, "additive")
    assert 0 < held_out["interval_coverage_pct"] <= 100 and p.meta["interval"]["n"] == 1200
    del p.meta["interval"]
    with pytest.raises(PredictorError, match="refit"):
        p.interval_ms(encode(PUBLISHED["DARTS_V2"])[None])
    p.save(tmp_path / "old")
    assert main(["predict", "--predictor", str(tmp_path / "old"), "DARTS_V2"]) == 0
    assert capsys.readouterr().out.strip().endswith(" ms raw (additive predictor)")  # no interval


def test_throughput_is_rows_over_the_best_of_three(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    class Stub:
        def predict_ms(self, x: np.ndarray) -> np.ndarray:
            seen.append(x.shape)
            return np.zeros(len(x))

    ticks = iter([10.0, 10.5, 20.0, 20.2, 30.0, 30.4])  # rounds of 0.5, 0.2 and 0.4 s
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(ticks))
    assert bench.throughput(Stub(), encode_many([sample(0, 0)])) == pytest.approx(bench.THROUGHPUT_ROWS / 0.2)
    assert seen == [(bench.THROUGHPUT_ROWS, 224)] * 3


def _fitted(seed: int) -> "Predictor":  # noqa: F821
    x = encode_many(sample(seed, i) for i in range(300))
    p = make_predictor("additive")
    p.fit(x, known_latency(x))
    return p


def test_a_saved_directory_ties_its_files_to_its_predictor_json(tmp_path: Path) -> None:
    import os
    import shutil
    import stat

    a, b = _fitted(1), _fitted(2)
    da, db = a.save(tmp_path / "a"), b.save(tmp_path / "b")
    shutil.copy(db / "weights.safetensors", da / "weights.safetensors")  # weights from another save
    with pytest.raises(PredictorError, match=f"^{da}: weights.safetensors differs from the one saved with its "
                                             "predictor.json"):
        load_dir(da)
    (da / "weights.safetensors").unlink()
    with pytest.raises(PredictorError, match=f"^{da}: weights.safetensors is missing"):
        load_dir(da)
    a.save(da)  # saved again: the directory replaced whole, nothing of the mix left
    x = encode_many([PUBLISHED["DARTS_V2"]])
    np.testing.assert_allclose(load_dir(da).predict_ms(x), a.predict_ms(x))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no temporary left beside them
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(da.stat().st_mode) == 0o777 & ~umask  # as any new directory and file, not 0700 / 0600
    assert {stat.S_IMODE(p.stat().st_mode) for p in da.iterdir()} == {0o666 & ~umask}
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "mine.txt").write_text("")
    with pytest.raises(PredictorError, match="holds other files, not a saved predictor"):
        a.save(notes)  # never replaced: it is not a predictor
    assert (notes / "mine.txt").exists()


def test_a_transfer_predictor_saved_again_keeps_only_its_own_priors(tmp_path: Path) -> None:
    from latkit.predictors.transfer import TransferPredictor

    first, second = _fitted(1), _fitted(2)
    both = TransferPredictor([first, second])
    both.coef, both.interval_rel = np.array([1.0, 0.5, 0.0]), 0.1
    one = TransferPredictor([second])
    one.coef, one.interval_rel = np.array([2.0, 0.0]), 0.1
    saved = both.save(tmp_path / "t")
    one.save(saved)  # fewer priors than the directory held: no prior_1 of the first save may remain
    again = load_dir(saved)
    x = encode_many([PUBLISHED["DARTS_V2"]])
    assert len(again.priors) == 1 and not (saved / "prior_1").exists()
    np.testing.assert_allclose(again.predict_ms(x), 2.0 * second.predict_ms(x))
    first.save(saved / "prior_0")  # a prior swapped for another: its files no longer match the transfer's record
    with pytest.raises(PredictorError, match=f"{saved}: prior_0/"):
        load_dir(saved)


def test_fit_on_very_few_rows_prints_no_nan_and_no_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import warnings

    from latkit.datasets.store import FORMAT, FORMAT_VERSION, open_writer

    path = tmp_path / "few.parquet"
    header = {"format": FORMAT, "version": FORMAT_VERSION, "backend": "onnxruntime", "device": "cpu",
              "config": {"batch": 1, "layers": 5, "channels": 8, "resolution": 16}, "protocol": {}, "seed": 3,
              "sampler_version": 1, "environment": {"cpu": "T"}}
    writer, _ = open_writer(path, header)
    for i in range(6):  # one held-out row (index 4): no rank correlation can be computed
        ms = float(known_latency(encode(sample(3, i))[None])[0])
        writer.append({"kind": "sample", "seed": 3, "index": i, "genotype": str(sample(3, i)), "backend": "onnxruntime",
                       "device": "cpu", "batch": 1, "resolution": 16, "channels": 8, "layers": 5,
                       **{s: ms for s in ("median_ms", "mean_ms", "min_ms", "p10_ms", "p90_ms", "iqm_ms")},
                       "std_ms": 0.0, "n": 1, "status": "ok", "error": "", "timestamp": str(i), "run_id": "t"})
    writer.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # SciPy's or numpy's warning would raise here
        assert main(["fit", "--dataset", str(path), "--model", "additive", "--out", str(tmp_path / "p")]) == 0
    captured = capsys.readouterr()
    assert "held-out 1:" in captured.out and "Kendall n/a" in captured.out and "nan" not in captured.out
    assert "Warning" not in captured.err


def test_an_embedded_predictor_refuses_weights_from_another(tmp_path: Path) -> None:
    """The embedded directories record their digests too: torch's weights copied into onnxruntime's are refused."""
    import shutil
    from importlib import resources

    from latkit.predictors import load_predictor
    from latkit.predictors.base import PredictorError

    root = Path(str(resources.files("latkit") / "predictors" / "pretrained"))
    mixed = tmp_path / "mixed"
    shutil.copytree(root / "onnxruntime_cpu_b1_r32_c36_l20_groups", mixed)
    assert load_predictor(str(mixed)).kind == "groups"
    shutil.copy(root / "torch_cpu_b1_r32_c36_l20_groups" / "weights.safetensors", mixed / "weights.safetensors")
    with pytest.raises(PredictorError, match="weights.safetensors differs"):
        load_predictor(str(mixed))
