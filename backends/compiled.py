"""torch.compile (TorchInductor): the network compiled before it is timed; compilation is never timed as latency.

``prepare`` compiles and runs the network once, so the compile time lands in the row's ``prepare_ms`` and the
timing loop sees only compiled code. By default the whole network is compiled, as a user deploys it. ``regional``
compiles each cell module instead (the network repeats two cell types, so Dynamo traces about 9 cell variants
instead of one 20-cell graph): measured here it did not cut a cold compile (112 s against 118 s), only a warm one
(8 s, Inductor's on-disk cache), and it times different code (nothing fuses across cells), so it is an option
(benchmarks/RESULTS.md). ``fullgraph`` is on: a graph break is an error, never
code that silently runs partly eager. Resetting Dynamo (all cells share ``Cell.forward``'s cache, which would
otherwise grow with every architecture and slow its guard checks) invalidates runners prepared before: keep one live
runner at a time (``persistent_runners = False``). Dynamo's caches are reset before each architecture, so a
campaign neither reuses another architecture's code nor grows without bound. The duet's reference is compiled
beside each architecture (``prepare(..., beside=runner)`` does not reset); the pair keep their times as well as
eager torch's do, on the tiny network and at the datasets' size (`benchmarks/compile_duet.py --full`: the duet's
ratio off the ratio of the times alone by a median 0.4%, as eager's; benchmarks/RESULTS.md, "The duet protocol").
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass

import torch

from latkit.backends.base import Backend, ModelSource, Runner
from latkit.backends.eager import TorchBackend, _TorchRunner
from latkit.errors import LatkitError

MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CACHE_SIZE_LIMIT = 64  # cell variants one network may compile; Dynamo's default (8) would leave cells eager


@dataclass(frozen=True)
class CompileOptions:
    """``torch.compile`` settings that decide the compiled code, hence the latency."""

    mode: str = "default"
    regional: bool = False


class TorchCompileBackend(TorchBackend):
    name = "torch-compile"
    Options = CompileOptions
    persistent_runners = False  # each prepare resets Dynamo: one live runner at a time

    def _check_options(self) -> None:
        if self.opts.mode not in MODES:
            raise LatkitError(f"torch-compile mode must be one of {', '.join(MODES)}, got {self.opts.mode!r}")
        if self.opts.mode == "reduce-overhead" and self.device != "cuda":
            raise LatkitError("torch-compile mode reduce-overhead replays CUDA graphs: it needs --device cuda")

    def options(self) -> dict[str, object]:
        return Backend.options(self)

    def _available_impl(self) -> tuple[bool, str]:
        if self.device == "cpu" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
            return False, "TorchInductor compiles C++ for the CPU and finds no C++ compiler (install g++)"
        return True, ""

    def prebuild(self, source: ModelSource) -> ModelSource:
        """Compile once in the builder: Inductor's on-disk cache on this machine then serves the measuring slot's own
        compile of the same network (a median 142 s cold, 18 s after a builder's compile: benchmarks/RESULTS.md,
        "Scale-out")."""
        self.prepare(source).close()
        return source

    def _prepare_impl(self, source: ModelSource, beside: Runner | None) -> Runner:
        if beside is None:  # a duet's reference is compiled beside the architecture: both stay compiled
            torch._dynamo.reset()
        model = source.network.to(self.device)
        if self.opts.regional:
            for cell in model.cells:
                cell.compile(mode=self.opts.mode, dynamic=False, fullgraph=True)
        else:
            model = torch.compile(model, mode=self.opts.mode, dynamic=False, fullgraph=True)
        runner = _TorchRunner(model, torch.randn(source.input_shape, device=self.device), self.device, self.threads,
                              beside)
        config = torch._dynamo.config
        name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"  # torch < 2.6
        with config.patch({name: CACHE_SIZE_LIMIT, f"accumulated_{name}": 4 * CACHE_SIZE_LIMIT}):
            runner.activate()  # compile with the protocol's threads
            try:
                runner.run()
            finally:
                runner.deactivate()
        return runner
