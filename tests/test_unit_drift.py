"""benchmarks/unit_drift.py: the per-pass deviations and what the anchors' level leaves, from hand-made rows."""
from __future__ import annotations

import json
from pathlib import Path

from benchmarks import unit_drift


def test_the_anchors_level_is_divided_out(tmp_path: Path) -> None:
    rows = []
    for k in range(12):  # the first 12 read 3% high, as the anchors do: a level, nothing of their own
        rows.append({"arm": "fresh", "pid": 1, "pass": 0, "role": "first", "index": k, "file_ratio": 0.8,
                     "ratio": 0.8 * 1.03, "ref_min_ms": 15.0})
    for k in range(8):
        rows.append({"arm": "fresh", "pid": 1, "pass": 0, "role": "anchor", "index": 12 + k, "file_ratio": 1.0,
                     "ratio": 1.03 + (0.01 if k % 2 else -0.01) * (k == 3), "ref_min_ms": 15.0})
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = unit_drift.analyse(path)
    row = next(line for line in table.splitlines() if line.startswith("| fresh 1 | 0 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "+3.00" and cells[3] == "3.00"  # bias and MAD before
    assert cells[6] == "+3.00" and cells[7] == "+0.00, 0.00"  # the anchors' level, and what it leaves
