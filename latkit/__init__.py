"""latkit: measure, predict and search for latency on real inference backends (latency-aware DARTS).

The Python API (``time_model``, ``calibrate``, ``load_predictor``, ``LatencyPenalty``, ``search``, ``parse``, ``encode``) is
imported on first use, so ``import latkit`` stays light and never loads an optional runtime. ``latkit.search(...)``
does what ``latkit search`` does (the ``latkit.search`` package is callable).
"""
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

_API = {"time_model": "latkit.api", "calibrate": "latkit.api", "load_predictor": "latkit.predictors",
        "LatencyPenalty": "latkit.search.penalty", "search": "latkit", "parse": "latkit.space", "encode": "latkit.space",
        "LatkitError": "latkit.errors"}
__all__ = list(_API)

try:
    __version__ = version("latkit")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"


def __getattr__(name: str) -> Any:
    if name == "search":  # the subpackage, callable: importing it binds it here
        return import_module("latkit.search")
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'latkit' has no attribute {name!r}")
