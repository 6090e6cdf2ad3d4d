"""benchmarks/report.py, the one command behind RESULTS' tables."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from benchmarks import report

ROOT = Path(__file__).resolve().parents[1]


def test_an_unknown_step_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "benchmarks.report", "nope", "--logs", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "unknown step(s) nope" in done.stderr


def test_every_step_reads_datasets_the_report_knows(tmp_path: Path) -> None:
    known = {"PY", "TORCH_OLD", *report.FILES, *report.OTHER, *report.HISTORY}
    for quick in (False, True):
        for name, argv in report.steps(tmp_path, quick):
            keys = {a[1:-1] for a in argv if a.startswith("{") and a.endswith("}")}
            assert keys and keys <= known, (name, keys - known)
    assert report.resolve(["{PY}", "-m", "x", "{ORT}"], {"PY": "python", "ORT": "a.parquet"}) == (
        ["python", "-m", "x", "a.parquet"], [])
    assert report.resolve(["{PY}", "{ORT}", "{OV}"], {"PY": "python", "ORT": "a.parquet"}) == ([], ["OV"])


def test_the_report_runs_end_to_end_on_a_fixture(tmp_path: Path) -> None:
    """Every step, on the first 125 architectures of each shipped file (a replaced file: the same rows), with
    --quick: each exits 0 and writes its table."""
    import numpy as np
    import pyarrow as pa

    from latkit.datasets.store import load, write

    data = tmp_path / "datasets"
    data.mkdir()
    replaced = {of: key for key, (_, of) in report.HISTORY.items()} | {"TORCH": "TORCH_OLD"}
    for key, name in report.FILES.items():
        ds = load(ROOT / "datasets" / f"{name}.parquet")
        keep = (ds.column("index") < 125) | (np.asarray(ds.column("kind")) == "reference")
        table = ds.table.filter(pa.array(keep))
        write(data / f"{name}.parquet", ds.header, table)
        if key in replaced:
            write(data / f"{replaced[key].lower()}.parquet", ds.header, table)
    out, logs = tmp_path / "out", tmp_path / "logs"
    done = subprocess.run([sys.executable, "-m", "benchmarks.report", "--quick", "--datasets", str(data),
                           "--out-root", str(out), "--logs", str(logs), "--cores", ",".join(
                               str(c) for c in sorted(os.sched_getaffinity(0)))],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "skipped" not in done.stdout, done.stdout
    names = [name for name, _ in report.steps(out, True)]
    assert sorted(p.stem for p in logs.glob("*.log")) == sorted(names)
    assert (out / "latkit/predictors/recommended.json").exists()
    for folder in ("predictors_duet", "predictors_b8", "predictors_torch", "interactions", "cross_backend",
                   "transfer", "transfer_cse", "graph_counts"):
        assert any((out / "benchmarks" / folder).iterdir()), folder
