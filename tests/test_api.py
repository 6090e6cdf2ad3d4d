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
