"""benchmarks/probe.py: a few of its fastest cases, each a real ``python -m latkit`` process, through its own runner."""
from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import probe

FAST = ["unknown backend", "--count 10000000000", "--seed 99999999999999999999999", "--target onnxruntime,,torch"]


@pytest.mark.parametrize("name", FAST)
def test_a_fast_probe_case_is_refused_in_one_line(name: str, tmp_path: Path) -> None:
    case = next(c for c in probe.cases() if c.name == name)
    outcome = probe.run_case(case, probe.Ctx(tmp_path), tmp_path / "case")
    assert outcome.ran and outcome.rc == 2 and outcome.message.startswith("latkit: error: ")
    assert outcome.passed, outcome.problems


def test_the_judge_fails_what_the_target_forbids() -> None:
    ok = probe.Run(2, "", "latkit: error: no\n", 0.1)
    assert probe.judge(probe.REFUSED, ok) == []
    assert probe.judge(probe.REFUSED, probe.Run(1, "", "Traceback (most recent call last):\n  x\n", 0.1))
    assert probe.judge(probe.REFUSED, probe.Run(2, "", "latkit: warning: w\nlatkit: error: no\n", 0.1))
    assert probe.judge(probe.REFUSED, probe.Run(0, "done\n", "", 0.1))
    assert probe.judge(probe.WORKS, probe.Run(0, "", "RuntimeWarning: nan\n", 0.1))
    assert probe.judge(probe.WARNS, probe.Run(0, "1 ms\n", "latkit: warning: w\n", 0.1)) == []
