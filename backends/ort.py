"""ONNX Runtime: CPU execution provider with a set thread count, or CUDA with I/O bound on the device."""
from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from latkit.backends.base import Backend, BackendUnavailable, ModelSource, Runner
from latkit.errors import LatkitError

CONV_ALGO_SEARCH = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")


def session_options(threads: int) -> "onnxruntime.SessionOptions":  # noqa: F821
    """latkit's onnxruntime session settings: ``threads`` intra-op threads, sequential execution, every graph
    optimisation (what the measured latencies ran with; benchmarks/graph_counts.py reads the graph they give)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return options


@dataclass(frozen=True)
class OrtOptions:
    """CUDA execution provider settings (the CPU provider has none beyond the protocol's threads)."""

    cudnn_conv_algo_search: str = "EXHAUSTIVE"
    cuda_graph: bool = False


def _shape(arg: Any) -> list[int]:
    """A session input/output's static shape; a dynamic dimension is a LatkitError."""
    if not all(isinstance(d, int) and d > 0 for d in arg.shape):
        raise LatkitError(f"ONNX tensor {arg.name!r} has a dynamic shape {arg.shape}: give every dimension a size")
    return list(arg.shape)


class _CpuRunner(Runner):
    device = "cpu"

    def __init__(self, session: Any, input_shape: tuple[int, ...]):
        self.session = session
        self.feed = {session.get_inputs()[0].name: np.random.default_rng(0).standard_normal(input_shape, np.float32)}

    def run(self) -> None:
        self.session.run(None, self.feed)

    def close(self) -> None:
        self.session = None


class _CudaRunner(Runner):
    """Input and outputs live in torch CUDA tensors bound by address: no host copies are timed. The session was
    created with this runner's stream as its compute stream, so the timing events bracket exactly its kernels."""

    device = "cuda"

    def __init__(self, session: Any, input_shape: tuple[int, ...], stream: Any):
        import torch

        self.session, self.stream = session, stream
        self.x = torch.randn(input_shape, device="cuda")
        self.outputs = {o.name: torch.empty(_shape(o), device="cuda") for o in session.get_outputs()}
        torch.cuda.synchronize()  # the input was written on the default stream
        self.binding = session.io_binding()
        self.binding.bind_input(session.get_inputs()[0].name, "cuda", 0, np.float32, list(self.x.shape),
                                self.x.data_ptr())
        for name, y in self.outputs.items():
            self.binding.bind_output(name, "cuda", 0, np.float32, list(y.shape), y.data_ptr())

    def run(self) -> None:
        self.session.run_with_iobinding(self.binding)

    def close(self) -> None:
        self.session = self.binding = None


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    extra = "gpu"
    Options = OrtOptions

    def _check_options(self) -> None:
        if self.opts.cudnn_conv_algo_search not in CONV_ALGO_SEARCH:
            raise LatkitError(f"cudnn_conv_algo_search must be one of {', '.join(CONV_ALGO_SEARCH)}, "
                              f"got {self.opts.cudnn_conv_algo_search!r}")
        if self.device == "cpu" and self.opts != OrtOptions():
            raise LatkitError("onnxruntime's options (cudnn_conv_algo_search, cuda_graph) apply to --device cuda")

    def options(self) -> dict[str, Any]:
        return asdict(self.opts) if self.device == "cuda" else {}

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

    def _prepare_impl(self, source: ModelSource, beside: Runner | None) -> Runner:
        import onnxruntime as ort

        options = session_options(self.threads)
        provider: str | tuple[str, dict[str, str]] = "CPUExecutionProvider"
        stream = None
        if self.device == "cuda":
            import torch

            stream = beside.stream if beside is not None else torch.cuda.Stream()
            provider = ("CUDAExecutionProvider", {"device_id": str(torch.cuda.current_device()),
                                                  "user_compute_stream": str(stream.cuda_stream),
                                                  "cudnn_conv_algo_search": self.opts.cudnn_conv_algo_search,
                                                  "enable_cuda_graph": str(int(self.opts.cuda_graph))})
        session = ort.InferenceSession(source.onnx(), options, providers=[provider])
        name = provider if isinstance(provider, str) else provider[0]
        if name not in session.get_providers():
            raise BackendUnavailable(f"onnxruntime did not enable {name} (got {session.get_providers()})")
        if stream is not None:
            return _CudaRunner(session, source.input_shape, stream)
        return _CpuRunner(session, source.input_shape)
