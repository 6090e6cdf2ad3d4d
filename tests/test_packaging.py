"""The wheel holds latkit and its three mapped subpackages with their data files, and nothing else top-level."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True)
    (path,) = out.glob("latkit-*.whl")
    return path


def test_wheel_layout(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"latkit"}
    for pkg in ("latkit", "latkit/predictors", "latkit/backends", "latkit/search", "latkit/datasets"):
        assert f"{pkg}/__init__.py" in names
    pretrained = [p for p in (ROOT / "latkit" / "predictors" / "pretrained").glob("*/*") if p.is_file()]
    for f in pretrained:
        assert f"latkit/predictors/pretrained/{f.parent.name}/{f.name}" in names
    data = [n for n in (ROOT / "datasets").iterdir() if n.suffix in (".parquet", ".md")]
    for f in data:
        assert f"latkit/datasets/{f.name}" in names
    assert not any(n.startswith(("tests/", "benchmarks/", "backends/", "search/", "datasets/")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "latkit = latkit.cli:run" in zipfile.ZipFile(wheel).read(entry_points).decode()
