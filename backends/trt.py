"""TensorRT: an engine built from ONNX (cached by content hash), I/O in torch CUDA tensors bound by address, a
timing cache on disk.

Written against the TensorRT 10 Python API (name-based tensors, ``execute_async_v3``), which TensorRT 11 keeps;
11 removed the weak-typing flags, so ``fp16=True`` needs TensorRT 10. ``tensorrt`` is imported only in methods.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from latkit.atomic import write_bytes
from latkit.backends.base import Backend, BackendUnavailable, ModelSource, Runner
from latkit.errors import LatkitError

TIMING_CACHE_DIR = Path("~/.cache/latkit/tensorrt")
PLAN_CACHE_DIR = TIMING_CACHE_DIR / "plans"  # engines by content hash: a re-measured architecture is not rebuilt


@lru_cache(maxsize=1)
def _logger() -> "object":
    """The process's one TensorRT logger (TensorRT expects a single logger shared by builders and runtimes)."""
    import tensorrt as trt

    return trt.Logger(trt.Logger.WARNING)


def timing_cache_name(gpu: str, capability: str, tensorrt_version: str, cuda_version: str) -> str:
    """A timing cache file name keyed by what makes a cache valid: GPU model, compute capability, TensorRT, CUDA."""
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", f"{gpu}-sm{capability}-trt{tensorrt_version}-cuda{cuda_version}")
    return slug.strip("-") + ".cache"


@dataclass(frozen=True)
class TensorRTOptions:
    """Builder settings that decide the engine, hence the latency: recorded in the dataset identity."""

    fp16: bool = False
    tf32: bool = True
    optimization_level: int = 3
    workspace_mib: int = 1024


class _EngineRunner(Runner):
    """One execution context on a dedicated CUDA stream; its input and outputs are torch CUDA tensors (shapes from
    the engine) whose addresses are bound once."""

    device = "cuda"

    def __init__(self, runtime: "object", engine: "object", stream: "torch.cuda.Stream | None" = None):
        import tensorrt as trt

        self.runtime, self.engine = runtime, engine  # kept so they outlive the context
        self.context = engine.create_execution_context()
        if self.context is None:
            raise RuntimeError("TensorRT could not create an execution context")
        self.stream = stream or torch.cuda.Stream()
        self.tensors = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            shape = tuple(engine.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise RuntimeError(f"engine tensor {name!r} has a dynamic shape {shape}")
            make = torch.randn if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else torch.empty
            self.tensors[name] = make(shape, device="cuda")
            self.context.set_tensor_address(name, self.tensors[name].data_ptr())
        torch.cuda.synchronize()  # the input was written on the default stream

    def run(self) -> None:
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log above)")

    def close(self) -> None:
        self.context = self.engine = self.runtime = None
        self.tensors = {}


class TensorRTBackend(Backend):
    name = "tensorrt"
    devices = ("cuda",)
    extra = "tensorrt"
    Options = TensorRTOptions

    def __init__(self, device: str = "cuda", threads: int = 1, *, timing_cache: str | Path | None = None,
                 plan_cache: str | Path | None = None, **options: object):
        super().__init__(device, threads, **options)
        self._timing_cache = None if timing_cache is None else Path(timing_cache).expanduser()
        self.plan_cache = Path(plan_cache or PLAN_CACHE_DIR).expanduser()

    def _check_options(self) -> None:
        if not 0 <= self.opts.optimization_level <= 5:
            raise LatkitError(f"tensorrt optimization_level must be 0..5 (TensorRT's builder levels), got "
                              f"{self.opts.optimization_level}")
        if self.opts.workspace_mib < 1:
            raise LatkitError(f"tensorrt workspace_mib must be >= 1 (MiB of builder workspace), got "
                              f"{self.opts.workspace_mib}")

    @property
    def timing_cache(self) -> Path:
        """The timing cache file: as given, or one per GPU, compute capability, TensorRT and CUDA version."""
        if self._timing_cache is not None:
            return self._timing_cache
        import tensorrt as trt

        from latkit.env import gpu_info

        info = gpu_info()
        name = timing_cache_name(info.get("gpu", "unknown-gpu"), info.get("cuda_capability", "unknown"),
                                 trt.__version__, str(torch.version.cuda))
        return TIMING_CACHE_DIR.expanduser() / name

    def _available_impl(self) -> tuple[bool, str]:
        if importlib.util.find_spec("tensorrt") is None:
            return False, ("tensorrt is not installed (its wheels come from NVIDIA's index: "
                           "pip install 'latkit[tensorrt]')")
        try:
            import tensorrt as trt
        except (ImportError, OSError) as e:
            return False, f"tensorrt is installed but does not import: {e}"
        if self.opts.fp16 and not hasattr(trt.BuilderFlag, "FP16"):
            return False, f"fp16 needs BuilderFlag.FP16, removed in TensorRT {trt.__version__} (strong typing only)"
        return True, ""

    def versions(self) -> dict[str, str]:
        import tensorrt as trt

        return {"tensorrt": trt.__version__, "torch": torch.__version__, "cuda": str(torch.version.cuda)}

    def plan_path(self, source: ModelSource) -> Path:
        """Where the engine of ``source`` is cached: keyed by the ONNX bytes, the options and the versions."""
        import tensorrt as trt

        from latkit.env import gpu_info

        key = json.dumps({"onnx": source.digest(), "options": self.options(), "tensorrt": trt.__version__,
                          "cuda": str(torch.version.cuda), "gpu": gpu_info().get("gpu")}, sort_keys=True)
        return self.plan_cache / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".plan")

    def _prepare_impl(self, source: ModelSource, beside: Runner | None) -> Runner:
        import tensorrt as trt

        runtime = trt.Runtime(_logger())
        path = self.plan_path(source)
        plan = path.read_bytes() if path.is_file() else self._build(source)
        engine = runtime.deserialize_cuda_engine(plan)
        if engine is None:
            raise RuntimeError("TensorRT failed to deserialize the engine")
        if not path.is_file():
            write_bytes(path, memoryview(plan))
        return _EngineRunner(runtime, engine, None if beside is None else beside.stream)

    def _build(self, source: ModelSource) -> "object":
        """The serialized engine of ``source``'s ONNX model (the timing cache grows along)."""
        import tensorrt as trt

        logger = _logger()
        builder = trt.Builder(logger)
        # Networks are always explicit-batch from TensorRT 10 (the flag is deprecated and ignored there).
        explicit = int(trt.__version__.split(".")[0]) < 10
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if explicit else 0)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(source.onnx()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT could not parse the ONNX model: {errors}")

        build = builder.create_builder_config()
        build.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.opts.workspace_mib << 20)
        if self.opts.fp16:
            if not hasattr(trt.BuilderFlag, "FP16"):
                raise BackendUnavailable(f"TensorRT {trt.__version__} has no BuilderFlag.FP16 (strong typing only)")
            build.set_flag(trt.BuilderFlag.FP16)
        if not self.opts.tf32 and hasattr(trt.BuilderFlag, "TF32"):
            build.clear_flag(trt.BuilderFlag.TF32)
        build.builder_optimization_level = self.opts.optimization_level
        cache = self._load_timing_cache(build)
        plan = builder.build_serialized_network(network, build)
        if plan is None:
            raise RuntimeError("TensorRT failed to build the engine (see the TensorRT log above)")
        self._save_timing_cache(cache)
        return plan

    def _load_timing_cache(self, build: "object") -> "object":
        """The on-disk timing cache attached to ``build``; an empty one when absent or made elsewhere."""
        blob = self.timing_cache.read_bytes() if self.timing_cache.is_file() else b""
        cache = build.create_timing_cache(blob)
        if cache is None or not build.set_timing_cache(cache, ignore_mismatch=False):
            cache = build.create_timing_cache(b"")  # another TensorRT version or GPU wrote the file: start afresh
            build.set_timing_cache(cache, ignore_mismatch=False)
        return cache

    def _save_timing_cache(self, cache: "object") -> None:
        """Write the (grown) cache back atomically, so concurrent builds never read a torn file."""
        write_bytes(self.timing_cache, memoryview(cache.serialize()))
