"""Backends by name, imported lazily so a missing heavy runtime never breaks ``import latkit``."""
from __future__ import annotations

import importlib

from latkit.backends.base import Backend
from latkit.errors import LatkitError

# name -> (module, class); modules are imported only when the backend is asked for.
BACKENDS: dict[str, tuple[str, str]] = {
    "torch": ("latkit.backends.eager", "TorchBackend"),
    "onnxruntime": ("latkit.backends.ort", "OnnxRuntimeBackend"),
    "tensorrt": ("latkit.backends.trt", "TensorRTBackend"),
}


def list_backends() -> list[str]:
    return list(BACKENDS)


def backend_class(name: str) -> type[Backend]:
    if name not in BACKENDS:
        raise LatkitError(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})")
    module, cls = BACKENDS[name]
    return getattr(importlib.import_module(module), cls)


def get_backend(name: str, device: str = "cpu", threads: int = 1) -> Backend:
    """A backend instance; call ``check_available()`` before preparing models."""
    return backend_class(name)(device=device, threads=threads)
