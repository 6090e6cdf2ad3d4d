"""benchmarks/report.py, the one command behind RESULTS' tables."""
from __future__ import annotations

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
