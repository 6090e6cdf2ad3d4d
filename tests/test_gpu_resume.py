"""benchmarks/gpu_resume.py: resume a shipped file only where `latkit measure` would accept it."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from latkit.backends.registry import get_backend
from latkit.backends.timing import MeasureProtocol
from latkit.measure import campaign_header
from latkit.network import NetConfig
from test_datasets import _dataset, row

from benchmarks import gpu_resume


def _file(path: Path, header: dict) -> Path:
    return _dataset(path, [dict(row(0, 1.0), backend="onnxruntime", layers=3, channels=4)], header)


def test_a_file_this_machine_would_write_is_resumed_and_another_gets_a_new_name(tmp_path: Path, monkeypatch,
                                                                                capsys) -> None:
    header = campaign_header(get_backend("onnxruntime"), NetConfig(layers=3, channels=4), MeasureProtocol(), 0)
    same = _file(tmp_path / "same.parquet", header)
    assert gpu_resume.resume_diff(same) == []
    other = _file(tmp_path / "other.parquet", dict(header, environment=dict(header["environment"], torch="0.1")))
    assert gpu_resume.resume_diff(other) == ["environment.torch"]

    for shipped, expected in ((same, "out.parquet"), (other, "out_nogpu.parquet")):
        monkeypatch.setattr(sys, "argv", ["gpu_resume.py", str(shipped), str(tmp_path / "out.parquet")])
        (tmp_path / "out.parquet").unlink(missing_ok=True)
        gpu_resume.main()
        out, err = capsys.readouterr()
        assert Path(out.strip()).name == expected
        assert ("resuming" in err) == (shipped is same) and (tmp_path / "out.parquet").exists() == (shipped is same)
    assert "environment.torch" in err


@pytest.fixture(autouse=True)
def _no_gpu(monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
