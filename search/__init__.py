"""Latency-aware DARTS search (installed as ``latkit.search``).

The package is also the Python API's search call: ``latkit.search("onnxruntime", lam=0.5, out="run/")`` is
``latkit.search.pipeline.search``, what ``latkit search`` runs (a module cannot be called, so this one's class says
how; the submodules import as usual).
"""
from __future__ import annotations

import sys
import types
from typing import Any


class _SearchPackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        from latkit.search.pipeline import search

        return search(*args, **kwargs)


sys.modules[__name__].__class__ = _SearchPackage
