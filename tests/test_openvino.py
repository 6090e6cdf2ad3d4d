"""OpenVINO and torch.compile: the compiling backends (skipped with the reason where a runtime is absent)."""
from __future__ import annotations

import time

import pytest
import torch

from latkit.backends.timing import MeasureProtocol, measure
from latkit.backends.registry import get_backend
from latkit.errors import LatkitError
from latkit.network import NetConfig, build
from latkit.space import PUBLISHED, sample

TINY = NetConfig(layers=3, channels=8, resolution=16)
FAST = MeasureProtocol(warmup_runs=1, warmup_ms=0, repeats=5)


def _available(name: str) -> None:
    ok, reason = get_backend(name).availability()
    if not ok:
        pytest.skip(f"{name}: {reason}")


def test_openvino_runs_on_the_calling_thread() -> None:
    # the CPU-share gate reads the measuring thread's CPU time: it must be where the inference runs
    _available("openvino")
    with get_backend("openvino").prepare(build(sample(0, 3), TINY)) as runner:
        timing = measure(runner, MeasureProtocol(warmup_runs=2, warmup_ms=0, repeats=50))
    assert timing.cpu_ms > 0.5 * timing.wall_ms


def test_openvino_matches_onnxruntime_numerically() -> None:
    _available("openvino")
    import numpy as np

    model = build(PUBLISHED["DARTS_V2"], TINY)
    with get_backend("openvino").prepare(model) as ov_runner:
        ov_runner.run()
        got = ov_runner.request.get_output_tensor().data.copy()
        with torch.inference_mode():
            expected = model(torch.from_numpy(ov_runner.x)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)


def test_openvino_options_are_checked_and_recorded() -> None:
    assert get_backend("openvino", options={"precision": "bf16"}).options() == {"precision": "bf16", "hint": "latency"}
    with pytest.raises(LatkitError, match="precision must be one of f32, bf16, f16"):
        get_backend("openvino", options={"precision": "int4"})
    with pytest.raises(LatkitError, match="unknown backend option 'streams'"):
        get_backend("openvino", options={"streams": "2"})


def test_torch_compile_times_compiled_code_only() -> None:
    _available("torch-compile")
    backend = get_backend("torch-compile", options={"regional": "true"})
    t0 = time.perf_counter()
    runner = backend.prepare(build(sample(0, 3), TINY))
    prepare_s = time.perf_counter() - t0
    timing = measure(runner, FAST)
    # compilation happened in prepare: every timed run (and the warm-up) is far below it
    assert timing.stats.p90_ms / 1e3 < prepare_s / 10 and timing.warmup_ms / 1e3 < prepare_s / 10
    assert all(cell._compiled_call_impl is not None for cell in runner.model.cells)  # regional: each cell compiled


def test_torch_compile_options() -> None:
    assert get_backend("torch-compile").options() == {"mode": "default", "regional": False}  # the whole network
    assert get_backend("torch-compile", options={"regional": "true"}).options()["regional"] is True
    with pytest.raises(LatkitError, match="regional must be true or false"):
        get_backend("torch-compile", options={"regional": "maybe"})
    with pytest.raises(LatkitError, match="mode must be one of"):
        get_backend("torch-compile", options={"mode": "fastest"})
