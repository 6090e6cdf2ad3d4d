from __future__ import annotations

import json

import onnx
import pytest

from latkit import __version__
from latkit.cli import main
from latkit.space import PUBLISHED, Genotype, parse, sample


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


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
    (["sweep", "--target", "onnxruntime", "--lambdas", "0,nan"], "--lambdas must be finite"),
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
    assert err.count("\n") == 1 and err.startswith(f"latkit: error: {blocker}: ")


def test_backends_prints_the_real_install_command(capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here: its row shows versions, not the install command")
    monkeypatch.setenv("COLUMNS", "400")  # one line per row: no wrapped cells
    assert main(["backends"]) == 0
    assert "pip install 'latkit[tensorrt]'" in capsys.readouterr().out
