"""latkit: measure, predict and search for latency on real inference backends (latency-aware DARTS).

The Python API (``time_model``, ``calibrate``, ``load_predictor``, ``LatencyPenalty``, ``parse``, ``encode``) is imported on first
use, so ``import latkit`` stays light and never loads an optional runtime.
"""
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

_API = {"time_model": "latkit.api", "calibrate": "latkit.api", "load_predictor": "latkit.predictors",
        "LatencyPenalty": "latkit.search.penalty", "parse": "latkit.space", "encode": "latkit.space",
        "LatkitError": "latkit.errors"}
__all__ = list(_API)

try:
    __version__ = version("latkit")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'latkit' has no attribute {name!r}")
