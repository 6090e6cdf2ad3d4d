"""Backends by name, imported lazily so a missing heavy runtime never breaks ``import latkit``."""
from __future__ import annotations

import importlib

from latkit.backends.base import Backend, parse_options
from latkit.errors import LatkitError

# name -> (module, class); modules are imported only when the backend is asked for.
BACKENDS: dict[str, tuple[str, str]] = {
    "torch": ("latkit.backends.eager", "TorchBackend"),
    "torch-compile": ("latkit.backends.compiled", "TorchCompileBackend"),
    "onnxruntime": ("latkit.backends.ort", "OnnxRuntimeBackend"),
    "openvino": ("latkit.backends.ov", "OpenVINOBackend"),
    "tensorrt": ("latkit.backends.trt", "TensorRTBackend"),
}


def list_backends() -> list[str]:
    return list(BACKENDS)


def backend_class(name: str) -> type[Backend]:
    if name not in BACKENDS:
        raise LatkitError(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})")
    module, cls = BACKENDS[name]
    return getattr(importlib.import_module(module), cls)


def list_devices() -> list[str]:
    """Every device some backend runs on (the CLI's --device choices)."""
    return list(dict.fromkeys(d for name in BACKENDS for d in backend_class(name).devices))


def default_device(name: str) -> str:
    """The device a backend runs on when none is named: the CPU where it runs there, else its first device
    (TensorRT: cuda)."""
    devices = backend_class(name).devices
    return "cpu" if "cpu" in devices else devices[0]


def get_backend(name: str, device: str | None = None, threads: int = 1,
                options: dict[str, str] | None = None) -> Backend:
    """A backend instance on ``device`` (default: ``default_device(name)``); ``options`` are ``KEY=VALUE`` strings of
    its Options (typed here). Call ``check_available()`` before preparing models."""
    cls = backend_class(name)
    return cls(device=device or default_device(name), threads=threads, **parse_options(cls.Options, options or {}))


def parse_backend_list(text: str, option: str, default_device: str = "cpu") -> list[tuple[str, str]]:
    """``onnxruntime,torch/cpu`` as (backend, device) pairs (``default_device`` where none is given); every name and
    device known, none twice, at least one. ``option`` names the flag in the errors."""
    items = [t.strip() for t in text.split(",")]
    if not any(items):
        raise LatkitError(f"{option} names no backend")
    if not all(items):
        raise LatkitError(f"{option} has an empty item in {text!r}: name a backend between every two commas")
    pairs = []
    for item in items:
        name, _, device = item.partition("/")
        device = device or default_device
        if name not in BACKENDS:
            raise LatkitError(f"unknown backend {name!r} in {option} (known: {', '.join(BACKENDS)})")
        if device not in list_devices():
            raise LatkitError(f"unknown device {device!r} in {option} (known: {', '.join(list_devices())})")
        pairs.append((name, device))
    if len(set(pairs)) != len(pairs):
        raise LatkitError(f"{option} names a backend twice: {text!r}")
    return pairs
