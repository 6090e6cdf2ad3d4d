"""PyTorch eager: the network as built, on cpu or cuda (cudnn.benchmark on, CUDA-event timing)."""
from __future__ import annotations

import torch

from latkit.backends.base import Backend, Runner
from latkit.network import NetConfig, Network


class _TorchRunner:
    def __init__(self, model: Network, x: torch.Tensor, device: str):
        self.model, self.x, self.device = model, x, device

    def run(self) -> None:
        with torch.inference_mode():
            self.model(self.x)


class TorchBackend(Backend):
    name = "torch"

    def _available_impl(self) -> tuple[bool, str]:
        return True, ""

    def versions(self) -> dict[str, str]:
        v = {"torch": torch.__version__}
        if self.device == "cuda":
            v["cuda"] = str(torch.version.cuda)
            v["cudnn"] = str(torch.backends.cudnn.version())
        return v

    def _prepare_impl(self, model: Network, config: NetConfig) -> Runner:
        torch.set_num_threads(self.threads)
        if self.device == "cuda":
            torch.backends.cudnn.benchmark = True
        model = model.to(self.device)
        x = torch.randn(config.input_shape(), device=self.device)
        return _TorchRunner(model, x, self.device)
