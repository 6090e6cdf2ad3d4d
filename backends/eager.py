"""PyTorch eager: the network as built, on cpu or cuda (cudnn.benchmark on, CUDA events on the runner's stream).

At batch 1 on a GPU, eager torch times the host's kernel-launch path, not the GPU (RESULTS, "GPU: torch on an
H200"). The ``cuda_graph`` option captures one forward in a CUDA graph after warm-up (``torch.cuda.graphs``: warm up
on a side stream, capture on the runner's stream) and times its replays: the GPU's own time.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from latkit.backends.base import Backend, ModelSource, Runner
from latkit.errors import LatkitError
from latkit.network import Network

GRAPH_WARMUP_RUNS = 3  # eager forwards on a side stream before capture (cudnn.benchmark picks its algorithms here)


@dataclass(frozen=True)
class TorchOptions:
    """``cuda_graph``: time replays of one captured forward (cuda only)."""

    cuda_graph: bool = False


class _TorchRunner(Runner):
    """The eval-mode network and its input; while active, torch uses the protocol's thread count (and on CUDA the
    runner's own stream, with cudnn.benchmark on); ``deactivate`` gives the process its own settings back."""

    def __init__(self, model: Network, x: torch.Tensor, device: str, threads: int, beside: Runner | None = None):
        self.model, self.x, self.device, self.threads = model, x, device, threads
        self.stream = None if device != "cuda" else beside.stream if beside is not None else torch.cuda.Stream()
        self._saved: tuple = ()

    def activate(self) -> None:
        self._saved = (torch.get_num_threads(), torch.backends.cudnn.benchmark)
        torch.set_num_threads(self.threads)
        if self.stream is not None:
            torch.cuda.synchronize()  # the input was written on the default stream
            torch.backends.cudnn.benchmark = True
            self._saved += (torch.cuda.current_stream(),)
            torch.cuda.set_stream(self.stream)

    def deactivate(self) -> None:
        threads, benchmark, *stream = self._saved
        torch.set_num_threads(threads)
        torch.backends.cudnn.benchmark = benchmark
        if stream:
            torch.cuda.set_stream(stream[0])

    def run(self) -> None:
        with torch.inference_mode():
            self.model(self.x)


class _GraphRunner(_TorchRunner):
    """One forward captured in a CUDA graph on the runner's stream; ``run`` replays it on the current stream, which
    ``activate`` makes the runner's. A duet's reference, prepared beside it, shares that stream."""

    def capture(self) -> None:
        """Warm up on a side stream, then capture one forward on the runner's stream (torch.cuda.graphs' recipe)."""
        self.activate()
        try:
            with torch.no_grad():
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    for _ in range(GRAPH_WARMUP_RUNS):
                        self.model(self.x)
                torch.cuda.current_stream().wait_stream(side)
                self.graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(self.graph, stream=self.stream):
                    self.y = self.model(self.x)  # the graph's output buffer, kept with it
            torch.cuda.synchronize()
        finally:
            self.deactivate()

    def run(self) -> None:
        self.graph.replay()

    def close(self) -> None:
        self.graph = self.y = None


class TorchBackend(Backend):
    name = "torch"
    reads = "network"
    Options = TorchOptions

    def _check_options(self) -> None:
        if self.opts.cuda_graph and self.device != "cuda":
            raise LatkitError(f"torch's cuda_graph option replays GPU work: it needs --device cuda, not "
                              f"{self.device!r}")

    def options(self) -> dict[str, object]:
        """Only a setting away from the default is recorded, so eager datasets keep the identity they had."""
        return {k: v for k, v in asdict(self.opts).items() if v != getattr(TorchOptions(), k)}

    def _available_impl(self) -> tuple[bool, str]:
        return True, ""

    def versions(self) -> dict[str, str]:
        v = {"torch": torch.__version__}
        if self.device == "cuda":
            v["cuda"] = str(torch.version.cuda)
            v["cudnn"] = str(torch.backends.cudnn.version())
        return v

    def _prepare_impl(self, source: ModelSource, beside: Runner | None) -> Runner:
        model = source.network.to(self.device)
        x = torch.randn(source.input_shape, device=self.device)
        if self.opts.cuda_graph:
            runner = _GraphRunner(model, x, self.device, self.threads, beside)
            runner.capture()
            return runner
        return _TorchRunner(model, x, self.device, self.threads, beside)
