from __future__ import annotations

import json
import subprocess
import sys

import onnx
import pytest

from latkit import __version__
from latkit.cli import main
from latkit.space import PUBLISHED, Genotype, parse, sample


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_start_up_loads_no_scipy() -> None:
    """Every command builds the whole parser first; SciPy there slowed each command, a refusal or --version, by about
    a second (benchmarks/RESULTS.md, "What happens on bad input or a fault?"). Fitting imports it when it scores."""
    code = "import sys; from latkit.cli import build_parser; build_parser(); print('scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_space_sample_strings_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["space", "sample", "--count", "3", "--seed", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [parse(line) for line in lines] == [sample(4, i) for i in range(3)]
    assert main(["space", "sample", "--count", "2", "--seed", "4", "--start", "1", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["index"] for r in rows] == [1, 2]
    assert Genotype.from_dict(rows[0]["genotype"]) == sample(4, 1)


def test_space_show(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["space", "show", "DARTS_V2"]) == 0
    out = capsys.readouterr().out
    assert "3.349 M" in out and "528.4 M" in out and "dil_conv_3x3(2)" in out


def test_export(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.onnx"
    assert main(["export", str(PUBLISHED["PC_DARTS"]), "--out", str(out), "--batch", "2", "--layers", "5",
                 "--channels", "8", "--resolution", "16"]) == 0
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto)
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [2, 3, 16, 16]


@pytest.mark.parametrize("argv, fault", [
    (["space", "show", "NOPE"], "not a genotype"),
    (["space", "show", "Genotype(normal=[('x', 0)]"], "malformed"),
    (["export", "DARTS_V2", "--out", "x.onnx", "--resolution", "30"], "multiple of 4"),
    (["space", "sample", "--count", "-1"], "--count: must be >= 0"),
    (["fit", "--dataset", "d.parquet", "--out", "p", "--stat", "p99_ms"], "invalid choice: 'p99_ms'"),
    (["bench", "predictors", "--stat", "p99_ms"], "invalid choice: 'p99_ms'"),
    (["dataset", "info", "d.parquet", "--stat", "p99_ms"], "invalid choice: 'p99_ms'"),
    (["fit", "--dataset", "d.parquet", "--out", "p", "--train-size", "0"], "--train-size: must be >= 1"),
    (["search", "--target", "onnxruntime", "--lambda", "nan"], "--lambda: must be finite"),
    (["search", "--target", "onnxruntime", "--lambda", "-1"], "--lambda: must be >= 0"),
    (["search", "--target", "onnxruntime", "--target-ms", "inf"], "--target-ms: must be finite"),
    (["search", "--target", "onnxruntime", "--target-ms", "0"], "--target-ms: must be > 0"),
    (["sweep", "--target", "onnxruntime", "--lambdas", "0,nan"], "lambda must be a finite number >= 0, got nan"),
    (["search", "--target", "onnxruntime", "--threads", "0"], "--threads: must be >= 1"),
    (["train", "DARTS_V2", "--threads", "0"], "--threads: must be >= 1"),
    (["measure", "--backend", "torch", "--count", "1", "--warmup-ms", "inf"], "--warmup-ms: must be finite"),
    (["export", "DARTS_V2", "--out", "/proc/latkit-cannot-write/x.onnx"], "/proc/latkit-cannot-write: "),
    (["measure", "--backend", "torch", "--count", "1", "--out", "/proc/latkit-cannot-write/d.parquet"],
     "/proc/latkit-cannot-write"),
    (["measure", "--backend", "torch", "--count", "1", "--threads", "0"], "--threads: must be >= 1"),
    (["bench", "predictors", "--sizes", "10,x"], "--sizes must be comma-separated"),
    (["bench", "predictors", "--models", "mlp,svm"], "unknown predictor(s) svm"),
    (["predict", "--predictor", "onnxruntime", "--backend", "torch", "DARTS_V2"], "not torch/cpu"),
    # every integer option is bounded where it is parsed: one line before anything is measured
    (["space", "sample", "--count", "99999999999999999999"], "--count: must be <= 10000000, got"),
    (["measure", "--backend", "torch", "--count", "10000000000"], "--count: must be <= 10000000, got"),
    (["measure", "--backend", "torch", "--count", "1", "--seed", "99999999999999999999999"],
     "--seed: must be <= 9223372036854775807, got"),
    (["space", "sample", "--start", "1" + "0" * 400], "--start: must be <= 10000000"),
    (["measure", "--backend", "torch", "--count", "1", "--pin-cpu", "99999999999999999999"], "--pin-cpu: must be <="),
    (["measure", "--backend", "torch", "--count", "2", "--select", "diverse", "--pool", "100000000000"],
     "--pool: must be <= 10000000"),
    (["measure", "--backend", "torch", "--count", "2", "--select", "diverse", "--pool", "200000"],
     "a pool of 200000 candidates is more than diverse selection draws from (at most 100000)"),
    (["sweep", "--target", "onnxruntime", "--seeds", "0,99999999999999999999"], "--seeds: must be <= "),
    (["search", "--target", "onnxruntime,,torch"], "--target has an empty item in 'onnxruntime,,torch'"),
    (["measure", "--backend", "torch", "--count", "1", "--shard", "1/99999999999999999999"],
     "--shard: N must be <= 10000000"),
    (["measure", "--backend", "torch", "--count", "1", "--shard", "3/2"], "--shard: K/N needs 1 <= K <= N"),
    # an empty path is refused, never replaced by a default name nor shown as a blank
    (["measure", "--backend", "torch", "--count", "1", "--out", ""], "--out: is empty"),
    (["predict", "--predictor", "", "DARTS_V2"], "--predictor: is empty"),
    (["fit", "--dataset", "", "--out", "p"], "--dataset: is empty"),
    (["train", "DARTS_V2", "--out-dir", ""], "--out-dir: is empty"),
    (["train", "DARTS_V2", "--out-dir", "r", "--out", "./r"], "--out ./r is --out-dir"),
])
def test_bad_input_is_one_line_exit_2(argv: list[str], fault: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("latkit: error:") and fault in err
    assert "Traceback" not in err


def test_usage_error_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["space", "sample", "--count", "many"]) == 2


def test_an_unwritable_out_is_one_line(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")  # a file where a directory is expected: NotADirectoryError, an OSError
    assert main(["export", "DARTS_V2", "--out", str(blocker / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("latkit: error: cannot write ") and str(blocker) in err


@pytest.mark.parametrize("argv", [
    ["search", "--target", "onnxruntime", "--out", "{file}/run"],
    ["sweep", "--target", "onnxruntime", "--out", "{file}"],
    ["train", "DARTS_V2", "--out", "{file}/r.json"],
    ["train", "DARTS_V2", "--out-dir", "{file}"],
    ["bench", "predictors", "--out", "{file}/b"],
    ["bench", "transfer", "--out", "{file}"],
    ["recommend", "--dataset", "none.parquet", "--out", "{file}/t.json"],
])
def test_a_long_command_checks_its_out_before_the_work(argv: list[str], tmp_path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A search, a sweep, a training or a benchmark that cannot write its result is refused before it runs (the
    search once ran its epochs and then failed to write result.json)."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main([a.replace("{file}", str(blocker)) for a in argv]) == 2
    err = capsys.readouterr()
    assert err.err.count("\n") == 1 and err.err.startswith("latkit: error: cannot write ") and str(blocker) in err.err
    assert "epoch" not in err.out and blocker.read_text() == ""


def test_backends_prints_the_real_install_command(capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here: its row shows versions, not the install command")
    monkeypatch.setenv("COLUMNS", "400")  # one line per row: no wrapped cells
    assert main(["backends"]) == 0
    assert "pip install 'latkit[tensorrt]'" in capsys.readouterr().out


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("latkit: error: ") and err.count("\n") == 1, err
    return err


def test_a_broken_predictor_directory_is_one_line(tmp_path, dataset, capsys: pytest.CaptureFixture[str]) -> None:
    from latkit.predictors import fit_dataset

    saved = fit_dataset(dataset, "additive")[0].save(tmp_path / "good")
    meta = json.loads((saved / "predictor.json").read_text())
    cases = {"list": [meta], "no_kind": {k: v for k, v in meta.items() if k != "kind"}}
    for name, doc in cases.items():
        bad = tmp_path / name
        bad.mkdir()
        (bad / "predictor.json").write_text(json.dumps(doc))
        assert main(["predict", "--predictor", str(bad), "DARTS_V2"]) == 2
        assert "is not a latkit predictor" in _one_line(capsys)
    (saved / "weights.safetensors").write_bytes(b"\x00garbage")
    assert main(["predict", "--predictor", str(saved), "DARTS_V2"]) == 2
    assert f"{saved}: weights.safetensors differs from the one saved with its predictor.json" in _one_line(capsys)
    del meta["sha256"]  # a directory saved before latkit recorded digests (as the embedded ones)
    (saved / "predictor.json").write_text(json.dumps(meta))
    assert main(["predict", "--predictor", str(saved), "DARTS_V2"]) == 2
    assert "weights cannot be read" in _one_line(capsys)


def test_predicting_a_kept_none_edge_warns_why(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "--predictor", "onnxruntime", "SNAS_AGGRESSIVE"]) == 0
    captured = capsys.readouterr()
    assert "interval" in captured.out
    assert captured.err.count("\n") == 1 and captured.err.startswith(
        "latkit: warning: the genotype keeps 6 'none' edge(s) (0 in the normal cell, 6 in the reduction cell): ")
    assert "no predictor has seen what 'none' costs" in captured.err
    assert main(["predict", "--predictor", "onnxruntime", "DARTS_V2"]) == 0
    assert capsys.readouterr().err == ""


def test_user_text_is_printed_as_it_is_never_as_markup(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from latkit.backends.timing import MeasureProtocol
    from latkit.campaign import run_campaign
    from latkit.backends.registry import get_backend
    from latkit.network import NetConfig

    path = tmp_path / "x[old].parquet"
    run_campaign(get_backend("torch"), NetConfig(layers=3, channels=4, resolution=8),
                 MeasureProtocol(warmup_runs=0, warmup_ms=0, repeats=2), seed=0, count=1, out=path)
    assert main(["dataset", "info", str(path)]) == 0
    assert f"{path}: torch on cpu" in capsys.readouterr().out
    weird = tmp_path / "x[" / "]y.parquet"  # the path holds "[/]", which rich reads as a closing tag
    weird.parent.mkdir()
    path.rename(weird)
    assert main(["dataset", "info", str(weird)]) == 0  # rich would raise MarkupError on "[/]"
    assert str(weird) in capsys.readouterr().out


def test_bench_of_a_file_that_is_not_onnx_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "/etc/hostname", "--backend", "onnxruntime"]) == 2
    assert "is not an ONNX model" in _one_line(capsys)


def test_train_a_result_whose_genotype_is_not_a_string(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    result = tmp_path / "result.json"
    result.write_text(json.dumps({"genotype": 42}))
    assert main(["train", str(result), "--epochs", "1"]) == 2
    assert "'genotype' must be a genotype string, got int" in _one_line(capsys)


def test_a_dangling_symlink_out_is_refused_before_the_work(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    assert main(["bench", "transfer", "--out", str(tmp_path / "link")]) == 2
    assert "is a symlink to" in capsys.readouterr().err


def test_train_out_makes_its_folders(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """The result JSON goes into folders that do not exist yet (it once failed there, after the training)."""
    out = tmp_path / "new" / "sub" / "r.json"
    assert main(["train", "DARTS_V2", "--epochs", "1", "--layers", "3", "--channels", "4", "--limit", "32",
                 "--resolution", "8", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["test_accuracy"] >= 0
