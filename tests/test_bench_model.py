"""latkit bench MODEL.onnx: a user's own ONNX model timed with latkit's protocol, on every ONNX backend here."""
from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from latkit.backends.registry import backend_class, get_backend, list_backends
from latkit.cli import main
from latkit.datasets.quality import validate
from latkit.datasets.store import load
from latkit.network import NetConfig, build
from latkit.onnx_export import export
from latkit.space import PUBLISHED

FAST = ["--repeats", "3", "--warmup-runs", "1", "--warmup-ms", "0"]
ONNX_BACKENDS = [(n, d) for n in list_backends() if backend_class(n).reads == "onnx" for d in backend_class(n).devices]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export(build(PUBLISHED["DARTS_V2"], NetConfig(layers=3, channels=8, resolution=16)),
                  tmp_path_factory.mktemp("m") / "darts.onnx")


def _dynamic_batch(path: Path, out: Path) -> Path:
    proto = onnx.load(str(path))
    dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    dim.Clear()
    dim.dim_param = "N"
    onnx.save(proto, str(out))
    return out


@pytest.mark.parametrize("name, device", ONNX_BACKENDS)
def test_bench_on_every_onnx_backend(name: str, device: str, model: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    ok, reason = get_backend(name, device).availability()
    if not ok:
        pytest.skip(f"{name} on {device}: {reason}")
    assert main(["bench", str(model), "--backend", name, "--device", device, *FAST]) == 0
    out = capsys.readouterr().out
    assert "darts.onnx" in out and "1x3x16x16" in out


def test_bench_appends_rows_to_a_dataset_file(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mine.parquet"
    for _ in range(2):
        assert main(["bench", str(model), "--backend", "onnxruntime", *FAST, "--out", str(out)]) == 0
    ds = validate(out)
    assert ds.table.column("kind").to_pylist() == ["model", "model"]
    assert ds.table.column("index").to_pylist() == [0, 1] and all(v > 0 for v in ds.table.column("min_ms").to_pylist())
    assert main(["dataset", "info", str(out)]) == 0
    assert "models of input shape [1, 3, 16, 16]" in capsys.readouterr().out


def test_bench_bad_models_are_one_line(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not a protobuf at all\xff" * 10)
    dynamic = _dynamic_batch(model, tmp_path / "dyn.onnx")
    custom = tmp_path / "custom.onnx"
    node = helper.make_node("NoSuchOp", ["x"], ["y"], domain="com.example")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                       helper.make_opsetid("com.example", 1)]), str(custom))
    cases = [([str(junk)], "is not an ONNX model"),
             ([str(tmp_path / "missing.onnx")], "No such file"),
             ([str(dynamic)], "dynamic dimension 'N' at axis 0 (give it with --batch)"),
             ([str(custom)], "onnxruntime/cpu cannot run custom.onnx"),
             ([str(model), "--backend", "torch"], "invalid choice: 'torch'")]
    for argv, fault in cases:
        backend = [] if "--backend" in argv else ["--backend", "onnxruntime"]
        assert main(["bench", *argv, *backend, *FAST]) == 2, fault
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("latkit: error:") and fault in err, err
    assert main(["bench", str(dynamic), "--backend", "onnxruntime", "--batch", "2", *FAST]) == 0
    assert "2x3x16x16" in capsys.readouterr().out


def test_bench_beside_a_reference_gives_the_ratio(model: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "duet.parquet"
    # the model is DARTS_V2 at 16x16, so beside itself (the same file) the ratio is about 1
    assert main(["bench", str(model), "--backend", "onnxruntime", *FAST, "--reference", str(model), "--out",
                 str(out)]) == 0
    printed = capsys.readouterr().out
    assert "beside darts.onnx sha256:" in printed and "in the same window" in printed
    row = load(out).table.to_pylist()[0]
    assert 0.7 < row["ratio"] < 1.4 and row["ratio"] == pytest.approx(row["min_ms"] / row["ref_min_ms"])
    assert load(out).header["protocol"]["duet"] and load(out).header["reference"].startswith("darts.onnx")
    # a name is built at the model's batch and resolution; the file refuses rows beside another reference
    assert main(["bench", str(model), "--backend", "onnxruntime", *FAST, "--reference", "PC_DARTS", "--out",
                 str(out)]) == 2
    assert "different reference" in capsys.readouterr().err
    assert main(["bench", str(model), "--backend", "onnxruntime", *FAST, "--reference", "PC_DARTS"]) == 0
    assert "beside PC_DARTS" in capsys.readouterr().out
    assert main(["bench", str(model), "--backend", "onnxruntime", *FAST, "--reference", "NOT_A_NAME"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_refused_before_anything_is_timed(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import latkit.measure

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("timed")

    monkeypatch.setattr(latkit.measure, "time_model", never)
    scalar = tmp_path / "scalar.onnx"  # a rank-0 float input: no batch to time the row by
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(scalar))
    weird = os.fsdecode(os.fsencode(tmp_path) + b"/\xff.parquet")  # $'\xff.parquet' as the shell passes it
    for argv, fault in (([str(scalar)], "input 'x' is a scalar (rank 0); latkit times models whose input has a "
                                        "batch dimension first"),
                        ([str(model), "--out", weird], "the file name is not valid UTF-8")):
        assert main(["bench", *argv, "--backend", "onnxruntime", *FAST]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("latkit: error:") and fault in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scalar.onnx"]
