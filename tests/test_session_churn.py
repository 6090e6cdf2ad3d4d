"""benchmarks/session_churn.py: the median ratio per bin of minutes or of sessions made, from hand-made steps."""
from __future__ import annotations


from benchmarks import session_churn


def test_summary_bins_by_minutes_and_by_sessions() -> None:
    rows = [{"minute": m, "sessions": s, "ratio": r}
            for m, s, r in ((0.2, 1, 0.97), (0.8, 14, 0.99), (1.5, 27, 1.0), (5.0, 300, 1.01), (5.5, 313, 1.03))]
    assert session_churn.summary(rows, "minute", [0, 1, 2, 4, 8]) == [(0, 0.98, 2), (1, 1.0, 1), (4, 1.02, 2)]
    assert session_churn.summary(rows, "sessions", [0, 10, 100, 1000]) == [(0, 0.97, 1), (10, 0.995, 2),
                                                                          (100, 1.02, 2)]
