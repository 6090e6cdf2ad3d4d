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
    (["space", "sample", "--count", "-1"], "--count must be >= 0"),
])
def test_bad_input_is_one_line_exit_2(argv: list[str], fault: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("latkit: error:") and fault in err
    assert "Traceback" not in err


def test_usage_error_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["space", "sample", "--count", "many"]) == 2
