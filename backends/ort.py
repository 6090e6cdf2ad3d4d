"""ONNX Runtime: CPU execution provider with a set thread count, or CUDA with I/O bound on the device."""
from __future__ import annotations

import importlib.util

import numpy as np

from latkit.backends.base import Backend, BackendUnavailable, Runner
from latkit.network import NetConfig, Network
from latkit.onnx_export import INPUT_NAME, OUTPUT_NAME, to_onnx


class _CpuRunner:
    device = "cpu"

    def __init__(self, session: "object", x: np.ndarray):
        self.session, self.feed = session, {INPUT_NAME: x}

    def run(self) -> None:
        self.session.run([OUTPUT_NAME], self.feed)


class _CudaRunner:
    """Input and output live in torch CUDA tensors bound by address: no host copies are timed. The session was
    created with this runner's stream as its compute stream, so the timing events bracket exactly its kernels."""

    device = "cuda"

    def __init__(self, session: "object", config: NetConfig, stream: "object"):
        import torch

        self.session, self.stream = session, stream
        self.x = torch.randn(config.input_shape(), device="cuda")
        self.y = torch.empty((config.batch, config.classes), device="cuda")
        torch.cuda.synchronize()  # the input was written on the default stream
        self.binding = session.io_binding()
        self.binding.bind_input(INPUT_NAME, "cuda", 0, np.float32, list(self.x.shape), self.x.data_ptr())
        self.binding.bind_output(OUTPUT_NAME, "cuda", 0, np.float32, list(self.y.shape), self.y.data_ptr())

    def run(self) -> None:
        self.session.run_with_iobinding(self.binding)


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def _available_impl(self) -> tuple[bool, str]:
        if importlib.util.find_spec("onnxruntime") is None:
            return False, "onnxruntime is not installed (pip install onnxruntime, or onnxruntime-gpu for CUDA)"
        import onnxruntime as ort

        if self.device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            return False, ("this onnxruntime build has no CUDAExecutionProvider (install onnxruntime-gpu: "
                           "pip install 'latkit[gpu]')")
        return True, ""

    def versions(self) -> dict[str, str]:
        import onnxruntime as ort

        return {"onnxruntime": ort.__version__, "providers": ",".join(ort.get_available_providers())}

    def _prepare_impl(self, model: Network, config: NetConfig) -> Runner:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        provider: "str | tuple[str, dict[str, str]]" = "CPUExecutionProvider"
        stream = None
        if self.device == "cuda":
            import torch

            stream = torch.cuda.Stream()
            provider = ("CUDAExecutionProvider", {"device_id": str(torch.cuda.current_device()),
                                                  "user_compute_stream": str(stream.cuda_stream)})
        session = ort.InferenceSession(to_onnx(model).SerializeToString(), options, providers=[provider])
        name = provider if isinstance(provider, str) else provider[0]
        if name not in session.get_providers():
            raise BackendUnavailable(f"onnxruntime did not enable {name} (got {session.get_providers()})")
        if stream is not None:
            return _CudaRunner(session, config, stream)
        return _CpuRunner(session, np.random.default_rng(0).standard_normal(config.input_shape(), np.float32))
