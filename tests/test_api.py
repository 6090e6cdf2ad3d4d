"""The README's Python API example, run exactly as written."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    section = README.read_text().split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    threads = torch.get_num_threads()
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - the project's own README, nothing else
    out = capsys.readouterr().out
    assert re.search(r"DARTS_V2 on onnxruntime/cpu: \d+\.\d\d ms", out)
    relaxed = float(re.search(r"relaxed latency (\d+\.\d+) ms", out).group(1))
    assert 5.0 < relaxed < 40.0 and "gradient norm 0.00e+00" not in out
    assert torch.get_num_threads() == threads  # timing left the process's settings alone


def test_time_model_inputs(tmp_path: Path) -> None:
    import latkit
    from latkit.network import NetConfig, build
    from latkit.onnx_export import export
    from latkit.space import PUBLISHED

    tiny = NetConfig(layers=3, channels=8, resolution=16)
    path = export(build(PUBLISHED["PC_DARTS"], tiny), tmp_path / "m.onnx")
    assert latkit.time_model(path).min_ms > 0  # an ONNX file
    assert latkit.time_model(build(PUBLISHED["PC_DARTS"], tiny), backend="torch", input_shape=(1, 3, 16, 16)).n == 30
    with pytest.raises(latkit.LatkitError, match="genotype, an .onnx path, or a torch module"):
        latkit.time_model(torch.nn.Identity(), backend="torch")
    with pytest.raises(latkit.LatkitError, match="times latkit networks, not ONNX files"):
        latkit.time_model(path, backend="torch")


def test_calibrate_scales_a_normalised_predictor_to_this_machine(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import latkit
    from latkit.backends.registry import get_backend
    from latkit.backends.timing import MeasureProtocol
    from latkit.campaign import run_campaign
    from latkit.cli import main
    from latkit.errors import LatkitError
    from latkit.network import NetConfig
    from latkit.predictors import fit_dataset

    tiny = NetConfig(layers=3, channels=4, resolution=8)
    out = tmp_path / "duet.parquet"
    run_campaign(get_backend("onnxruntime"), tiny, MeasureProtocol(warmup_runs=2, warmup_ms=0, repeats=5), seed=0,
                 count=10, out=out, repeat_every=0, reference_every=0)
    predictor, _ = fit_dataset(out, "additive")
    meta = predictor.meta
    assert meta["normalised"] and meta["baseline_ms"] > 0 and meta["protocol"]["duet"]
    cal = latkit.calibrate(predictor, windows=2)
    assert cal["scale"] == pytest.approx(cal["reference_ms"] / cal["baseline_ms"])
    assert 0.3 < cal["scale"] < 3  # the same machine, minutes later: about 1, whatever the host's state
    directory = predictor.save(tmp_path / "p")
    assert main(["predict", "--predictor", str(directory), "DARTS_V2", "--calibrate", "--no-interval"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("calibrated: DARTS_V2 runs here now in ") and captured.out.endswith(" ms raw (this machine now, calibrated) (additive predictor)\n")
    raw, _ = fit_dataset(out, "additive", normalised=False)
    assert not raw.meta["normalised"] and raw.meta["baseline_ms"] is None
    with pytest.raises(LatkitError, match="learned raw latencies"):
        latkit.calibrate(raw)


def test_calibrate_takes_the_fastest_window_of_the_learned_statistic(monkeypatch: pytest.MonkeyPatch) -> None:
    import latkit
    import latkit.measure as measure_module
    from latkit.predictors import make_predictor

    windows = iter([{"status": "ok", "ref_min_ms": 3.0, "ref_median_ms": 5.0},
                    {"status": "ok", "ref_min_ms": 2.0, "ref_median_ms": 6.0},
                    {"status": "ok", "ref_min_ms": 4.0, "ref_median_ms": 4.5}])
    monkeypatch.setattr(measure_module, "time_genotype", lambda *args, **kwargs: next(windows))
    predictor = make_predictor("additive")
    predictor.meta = {"normalised": True, "stat": "median_ms", "baseline_ms": 4.0, "backend": "onnxruntime",
                      "device": "cpu", "config": {"layers": 3, "channels": 4, "resolution": 8}, "protocol": {},
                      "backend_options": {}}
    cal = latkit.calibrate(predictor, windows=3)
    assert cal == {"reference_ms": 4.5, "baseline_ms": 4.0, "scale": 4.5 / 4.0, "anchors": 0}  # median_ms, fastest
