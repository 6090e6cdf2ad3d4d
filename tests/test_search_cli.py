"""latkit search / train / sweep end to end on tiny settings (real backends measure the result)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from latkit.cli import main
from latkit.predictors import fit_dataset
from latkit.space import parse

TINY = ["--epochs", "1", "--layers", "3", "--channels", "4", "--limit", "64", "--resolution", "8", "--threads", "1"]


@pytest.fixture(scope="module")
def predictor_dir(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    predictor, _ = fit_dataset(dataset, "additive")
    return predictor.save(tmp_path_factory.mktemp("pred") / "additive")


def test_search_writes_measured_result_and_train_reads_it(predictor_dir: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["search", "--target", "onnxruntime", "--predictor", str(predictor_dir), "--lambda", "0.5",
                 *TINY, "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    parse(result["genotype"])
    assert result["target"] == "onnxruntime" and result["lam"] == 0.5 and len(result["history"]) == 1
    assert result["deployment_config"]["layers"] == 5
    assert result["measured"]["min_ms"] > 0 and result["reference"]["measured"]["min_ms"] > 0
    assert "measured on onnxruntime/cpu" in capsys.readouterr().out
    assert main(["train", str(out / "result.json"), "--epochs", "1", "--layers", "3", "--channels", "4",
                 "--limit", "64", "--resolution", "8", "--out", str(tmp_path / "t.json")]) == 0
    trained = json.loads((tmp_path / "t.json").read_text())
    assert trained["genotype"] == result["genotype"]  # it trained the searched genotype...
    assert f"test accuracy {100 * trained['test_accuracy']:.2f}%" in capsys.readouterr().out  # ...and says so


def test_search_refuses_non_differentiable_predictor(dataset: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    predictor, _ = fit_dataset(dataset, "xgboost", n_estimators=20)
    path = predictor.save(tmp_path / "xgb")
    assert main(["search", "--target", "onnxruntime", "--predictor", str(path), *TINY,
                 "--out", str(tmp_path / "r")]) == 2
    assert "not differentiable" in capsys.readouterr().err


def test_search_without_embedded_predictor_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "--target", "tensorrt", "--target-device", "cuda", *TINY, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "latkit: error:" in err


def test_search_for_several_targets_measures_on_each(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["search", "--target", "onnxruntime,torch", "--combine", "worst", "--lambda", "0.5", *TINY,
                 "--out", str(out)]) == 0  # the embedded predictors of both, fitted at one deployment shape
    result = json.loads((out / "result.json").read_text())
    assert result["targets"] == ["onnxruntime/cpu", "torch/cpu"] and result["combine"] == "worst"
    assert set(result["latencies_ms"]) == {"onnxruntime/cpu", "torch/cpu"}
    assert [t["backend"] for t in result["settings"]["penalty"]["targets"]] == ["onnxruntime", "torch"]
    for name in result["targets"]:
        m = result["per_target"][name]
        assert m["measured"]["min_ms"] > 0 and m["reference"]["measured"]["min_ms"] > 0
    assert result["measured"] == result["per_target"]["onnxruntime/cpu"]["measured"]
    printed = capsys.readouterr().out
    assert "measured on onnxruntime/cpu" in printed and "measured on torch/cpu" in printed


@pytest.mark.parametrize("command, message", [
    (["search", "--target", "onnxruntime,onnxruntime"], "names a backend twice"),
    (["search", "--target", "onnxruntime,nosuch"], "unknown backend 'nosuch' in --target"),
    (["search", "--target", "onnxruntime,torch", "--predictor", "onnxruntime"], "a predictor is given for one target"),
    (["search", "--target", "onnxruntime,torch", "--form", "relative", "--target-ms", "5"], "several targets"),
    (["sweep", "--target", "onnxruntime,torch"], "latkit sweep takes one --target"),
    (["sweep", "--target", "onnxruntime", "--form", "relative"], "relative form needs a target latency (--target-ms)"),
    (["search", "--target", " , "], "--target names no backend"),
    (["sweep", "--target", "onnxruntime", "--backends", "torch,nosuch"], "unknown backend 'nosuch' in --backends"),
    (["sweep", "--target", "onnxruntime", "--backends", "torch,torch/cpu"], "--backends names a backend twice"),
    (["sweep", "--target", "onnxruntime", "--backends", "torch/tpu"], "unknown device 'tpu' in --backends"),
])
def test_several_targets_errors(command: list[str], message: str, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, *TINY, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_sweep_table_and_plot(predictor_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    assert main(["sweep", "--target", "onnxruntime", "--predictor", str(predictor_dir), "--lambdas", "0,1",
                 "--backends", "torch", *TINY, "--train-epochs", "1", "--train-layers", "3", "--train-channels", "4",
                 "--out", str(out)]) == 0
    doc = json.loads((out / "sweep.json").read_text())
    rows = doc["rows"]
    assert [r["name"] for r in rows] == ["DARTS_V2", "lambda=0", "lambda=1"]
    assert all(set(r["latency_ms"]) == {"onnxruntime/cpu", "torch/cpu"} for r in rows)  # the target, and as asked
    assert all(r["latency_ms"]["torch/cpu"] > 0 and r["latency_ms"]["onnxruntime/cpu"] > 0 for r in rows)
    # accuracy and latency belong to different networks: both shapes are recorded and printed
    assert (doc["trained_config"]["layers"], doc["trained_config"]["channels"]) == (3, 4)
    assert doc["deployment_config"]["layers"] == 5
    table = (out / "sweep.md").read_text()
    assert (out / "pareto.png").stat().st_size > 1000 and "| lambda=1 |" in table
    assert "3 cells x 4 channels" in table and "5 cells x 8 channels" in table


def test_sweep_with_seeds_gives_mean_and_std(predictor_dir: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import statistics

    import latkit.search.pipeline as pipeline

    timed: list[str] = []
    real = pipeline.measure_ms

    def counting(backend: str, device: str, genotype: object, config: object) -> dict:
        timed.append(str(genotype))
        return real(backend, device, genotype, config)

    monkeypatch.setattr(pipeline, "measure_ms", counting)
    out = tmp_path / "sweep"
    assert main(["sweep", "--target", "onnxruntime", "--predictor", str(predictor_dir), "--lambdas", "0,1",
                 "--seeds", "0,1", "--backends", "onnxruntime", *TINY, "--train-epochs", "1", "--train-layers",
                 "3", "--train-channels", "4", "--out", str(out)]) == 0
    doc = json.loads((out / "sweep.json").read_text())
    assert [(r["name"], r["seed"]) for r in doc["rows"]] == [
        ("DARTS_V2", 0), ("DARTS_V2", 1), ("lambda=0", 0), ("lambda=1", 0), ("lambda=0", 1), ("lambda=1", 1)]
    for lam in ("0", "1"):  # each (lambda, seed) searched into its own directory, with its seed
        assert [json.loads((out / f"lambda_{lam}_seed{s}" / "result.json").read_text())["settings"]["seed"]
                for s in (0, 1)] == [0, 1]
    assert len(timed) == len(set(timed)) == len({r["genotype"] for r in doc["rows"]})  # each genotype timed once
    summary = {s["name"]: s for s in doc["summary"]}
    runs = [r for r in doc["rows"] if r["name"] == "lambda=1"]
    assert summary["lambda=1"]["n"] == 2
    assert summary["lambda=1"]["test_accuracy"]["mean"] == pytest.approx(
        statistics.fmean(r["test_accuracy"] for r in runs))
    assert summary["lambda=1"]["measured_ms"]["std"] == pytest.approx(
        statistics.stdev(r["measured_ms"] for r in runs))
    # each timed beside DARTS_V2: the ratio is in the rows, the summary and the table, and the verdict uses it
    assert summary["lambda=1"]["latency_ratio"]["onnxruntime/cpu"]["mean"] == pytest.approx(
        statistics.fmean(r["latency_ratio"]["onnxruntime/cpu"] for r in runs))
    assert summary["DARTS_V2"]["measured_ms"]["std"] == 0  # one genotype, measured once for both seeds
    table = (out / "sweep.md").read_text()
    assert "| lambda=1 | 2 |" in table and "lambda=1: latency" in table and "; std pooled over both " in table
    ratio = {n: summary[n]["latency_ratio"]["onnxruntime/cpu"]["mean"] for n in ("lambda=0", "lambda=1")}
    cut = 100 * (ratio["lambda=1"] / ratio["lambda=0"] - 1)
    assert "onnxruntime/cpu x DARTS_V2" in table
    assert f"lambda=1: latency {cut:+.1f}% on onnxruntime/cpu (in DARTS_V2's units: each timed beside it)" in table


def test_sweep_with_the_relative_form_aims_at_its_target(predictor_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    assert main(["sweep", "--target", "onnxruntime", "--predictor", str(predictor_dir), "--form", "relative",
                 "--target-ms", "6", "--lambdas", "1", "--backends", "onnxruntime", *TINY, "--train-epochs", "1",
                 "--train-layers", "3", "--train-channels", "4", "--out", str(out)]) == 0
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["form"] == "relative" and doc["target_ms"] == 6.0
    penalty = json.loads((out / "lambda_1" / "result.json").read_text())["settings"]["penalty"]
    assert penalty["form"] == "relative" and penalty["target_ms"] == 6.0


def test_sweep_refuses_bad_seeds(predictor_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("0,x", "1,1", "-1"):
        assert main(["sweep", "--target", "onnxruntime", "--predictor", str(predictor_dir), "--seeds", bad,
                     *TINY, "--out", str(tmp_path / "s")]) == 2
        err = capsys.readouterr().err
        assert ("seeds must be" in err or "--seeds: expected an integer" in err) and err.count("\n") == 1
    assert not (tmp_path / "s").exists()


def test_sweep_checks_the_target_before_searching(predictor_dir: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", "--target", "onnxruntime", "--target-device", "cuda", "--predictor", str(predictor_dir),
                 "--force-predictor", *TINY, "--out", str(tmp_path / "s")]) == 2
    assert "not available" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()  # no search ran


def test_search_refuses_a_predictor_for_another_target(predictor_dir: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "--target", "torch", "--predictor", str(predictor_dir), *TINY,
                 "--out", str(tmp_path / "r")]) == 2
    assert "fitted on onnxruntime/cpu latencies, not torch/cpu" in capsys.readouterr().err
    assert main(["search", "--target", "torch", "--predictor", str(predictor_dir), "--force-predictor",
                 "--no-measure", *TINY, "--out", str(tmp_path / "r")]) == 0
    assert "latkit: warning:" in capsys.readouterr().err


def test_search_writes_its_result_before_measuring(predictor_dir: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import latkit.search.pipeline as pipeline

    def broken(*args: object, **kwargs: object) -> dict:
        raise KeyboardInterrupt  # the user gives up while the result is being measured

    monkeypatch.setattr(pipeline, "measure_ms", broken)
    out = tmp_path / "run"
    assert main(["search", "--target", "onnxruntime", "--predictor", str(predictor_dir), *TINY,
                 "--out", str(out)]) == 130
    result = json.loads((out / "result.json").read_text())
    assert parse(result["genotype"]) and "measured" not in result and result["search_device"] == "cpu"


def test_the_verdict_pools_the_accuracy_spread_of_both_lambdas() -> None:
    """Three seeds of lambda=0 that tie on a small test set (std 0) do not make one image's gap "below"."""
    from latkit.search.pipeline import verdict

    def run(name: str, ratio: float, acc: float, acc_std: float, n: int = 3) -> dict:
        return {"name": name, "n": n, "test_accuracy": {"mean": acc, "std": acc_std},
                "latency_ratio": {"onnxruntime/cpu": {"mean": ratio, "std": 0.0}}}

    doc = {"target": "onnxruntime/cpu", "summary": [
        run("lambda=0", 0.894, 0.9803, 0.0), run("lambda=0.5", 0.520, 0.9775, 0.0129),
        run("lambda=2", 0.437, 0.9600, 0.0043)]}
    half, two = verdict(doc)
    assert half.startswith("lambda=0.5: latency -41.8% on onnxruntime/cpu")
    assert "-0.28 points (within one std of lambda=0 or above; std pooled over both 0.91)" in half
    assert "-2.03 points (more than one std below lambda=0; std pooled over both 0.30)" in two
    one_run = {"target": "onnxruntime/cpu",
               "summary": [run("lambda=0", 0.9, 0.98, 0.01), run("lambda=4", 0.4, 0.97, 0.0, 1)]}
    assert verdict(one_run)[0].endswith("std pooled over both 1.00)")  # a single run adds no spread, nor halves it


def test_the_library_search_is_what_the_cli_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import latkit
    from latkit.predictors.recommend import recommended_kind

    assert main(["search", "--target", "onnxruntime", *TINY, "--no-measure", "--out", str(tmp_path / "cli")]) == 0
    printed = capsys.readouterr().out
    cli = json.loads((tmp_path / "cli" / "result.json").read_text())
    api = latkit.search("onnxruntime", out=tmp_path / "api", measure=False, epochs=1, layers=3, channels=4,
                        limit=64, resolution=8)
    assert api == json.loads((tmp_path / "api" / "result.json").read_text())
    assert api["genotype"] == cli["genotype"] and api["latency_ms"] == cli["latency_ms"]
    kind = recommended_kind("onnxruntime", "cpu", differentiable=True)  # --model auto, the default
    assert api["predictor"] == cli["predictor"] == kind and api["unit"] == cli["unit"] == "normalised"
    assert api["max_free"] == 2 and api["cells"]["normal"]["parameter_free"] <= 2  # the collapse bound, default on
    assert f"ms normalised (the {kind} predictor)" in printed and f"with the {kind} predictor" in printed


def test_a_measurement_is_printed_in_the_predictors_unit_beside_the_raw_figure() -> None:
    from latkit.cli import _measured
    from latkit.predictors import make_predictor

    p = make_predictor("groups")
    p.meta = {"normalised": True, "baseline_ms": 10.0, "stat": "min_ms"}
    assert p.unit == "normalised" and p.in_unit_ms(30.0, 0.5) == 5.0 and p.in_unit_ms(30.0, None) is None
    m = {"unit": p.unit, "predicted_ms": 4.0, "measured": {"min_ms": 30.0, "ratio": 0.5, "in_unit_ms": 5.0},
         "reference": {"measured": {"min_ms": 61.0}}}
    line = _measured(m)
    assert line.startswith("5.000 ms normalised (0.500 x DARTS_V2 timed beside it, times the predictor's baseline; "
                           "+25.0% against the prediction); raw 30.000 ms (min, this machine now")
    p.meta = {"normalised": False}
    assert p.unit == "raw" and p.in_unit_ms(30.0, 0.5) == 30.0
