"""Latency datasets and the code that reads, writes and merges them (installed as ``latkit.datasets``)."""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def shipped() -> list[Path]:
    """The latency datasets that ship with latkit (measured by latkit; each has a datasheet beside it)."""
    return sorted(HERE.glob("*.parquet"))
