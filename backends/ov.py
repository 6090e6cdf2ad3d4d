"""OpenVINO: the ONNX model compiled by the CPU plugin (or an Intel GPU's), latency hint, one stream.

With one stream and one inference thread the CPU plugin runs the inference on the calling thread (checked by
``tests/test_openvino.py``), so the protocol's CPU-share gate sees the same thread as on onnxruntime. ``openvino``
is imported only in methods: a missing runtime never breaks ``import latkit``.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

import numpy as np

from latkit.backends.base import Backend, ModelSource, Runner
from latkit.errors import LatkitError, one_line

PLUGINS = {"cpu": "CPU", "gpu": "GPU"}
PRECISIONS = ("f32", "bf16", "f16")
HINTS = ("latency", "throughput")


@dataclass(frozen=True)
class OpenVINOOptions:
    """Compile settings that decide the latency. ``precision`` is explicit because the CPU plugin otherwise picks
    bf16 on CPUs that have it, and the latency would then depend on the CPU's instruction set silently."""

    precision: str = "f32"
    hint: str = "latency"


class _Runner(Runner):
    """One infer request whose input tensor shares a numpy array (nothing is copied per run)."""

    def __init__(self, compiled: Any, input_shape: tuple[int, ...], device: str):
        import openvino as ov

        self.device = device
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.x = np.random.default_rng(0).standard_normal(input_shape, np.float32)
        self.request.set_input_tensor(ov.Tensor(self.x, shared_memory=True))

    def run(self) -> None:
        self.request.infer()

    def close(self) -> None:
        self.request = self.compiled = None


class OpenVINOBackend(Backend):
    name = "openvino"
    devices = ("cpu", "gpu")
    extra = "openvino"
    Options = OpenVINOOptions

    def _check_options(self) -> None:
        if self.opts.precision not in PRECISIONS:
            raise LatkitError(f"openvino precision must be one of {', '.join(PRECISIONS)}, got {self.opts.precision!r}")
        if self.opts.hint not in HINTS:
            raise LatkitError(f"openvino hint must be one of {', '.join(HINTS)}, got {self.opts.hint!r}")

    def _available_impl(self) -> tuple[bool, str]:
        if importlib.util.find_spec("openvino") is None:
            return False, "openvino is not installed (pip install 'latkit[openvino]')"
        try:
            import openvino as ov

            devices = ov.Core().available_devices
        except (ImportError, OSError, RuntimeError) as exc:
            return False, f"openvino is installed but does not load: {one_line(exc, 200)}"
        plugin = PLUGINS[self.device]
        if not any(d.split(".")[0] == plugin for d in devices):
            return False, f"OpenVINO reports no {plugin} device (available: {', '.join(devices) or 'none'})"
        return True, ""

    def versions(self) -> dict[str, str]:
        import openvino as ov

        return {"openvino": ov.__version__}

    def device_name(self) -> str:
        import openvino as ov

        return str(ov.Core().get_property(PLUGINS[self.device], "FULL_DEVICE_NAME"))

    def _prepare_impl(self, source: ModelSource, beside: Runner | None) -> Runner:
        import openvino as ov

        core = ov.Core()
        model = core.read_model(source.onnx())  # a model OpenVINO cannot read or compile raises: an error row
        config: dict[str, Any] = {"PERFORMANCE_HINT": self.opts.hint.upper(),
                                  "INFERENCE_PRECISION_HINT": self.opts.precision}
        if self.device == "cpu":
            # one stream of `threads` threads; pinning is left to the process (--pin-cpu), not to OpenVINO
            config.update(NUM_STREAMS=1, INFERENCE_NUM_THREADS=self.threads, ENABLE_CPU_PINNING=False)
        compiled = core.compile_model(model, PLUGINS[self.device], config)
        return _Runner(compiled, source.input_shape, self.device)
