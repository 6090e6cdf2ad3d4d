"""PyTorch eager: the network as built, on cpu or cuda (cudnn.benchmark on, CUDA events on the runner's stream)."""
from __future__ import annotations

import torch

from latkit.backends.base import Backend, ModelSource, Runner
from latkit.network import Network


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


class TorchBackend(Backend):
    name = "torch"
    reads = "network"

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
        return _TorchRunner(model, x, self.device, self.threads, beside)
