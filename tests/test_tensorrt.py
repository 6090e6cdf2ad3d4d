"""The TensorRT adapter: lazy import and clear unavailability everywhere; engine build, timing and parity on a GPU."""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

import latkit.network
import latkit.space
from latkit.backends.timing import MeasureProtocol, measure
from latkit.backends.registry import get_backend
from latkit.errors import LatkitError
from latkit.network import NetConfig


def test_lazy_import_and_unavailability_reason() -> None:
    already = "tensorrt" in sys.modules
    module = importlib.import_module("latkit.backends.trt")
    if not already:
        assert "tensorrt" not in sys.modules, "importing the adapter must not import tensorrt"
    assert module.TensorRTBackend.name == "tensorrt"

    backend = get_backend("tensorrt", "cuda")
    ok, reason = backend.availability()
    if importlib.util.find_spec("tensorrt") is None or not torch.cuda.is_available():
        assert not ok and reason.strip()
    if importlib.util.find_spec("tensorrt") is None:
        ok, reason = backend._available_impl()
        assert not ok and "pip install 'latkit[tensorrt]'" in reason
    with pytest.raises(LatkitError, match="cuda"):
        get_backend("tensorrt", "cpu")


class _FakeCache:
    def __init__(self, blob: bytes):
        self.blob = blob

    def serialize(self) -> bytes:
        return self.blob + b"+grown"


class _FakeBuilderConfig:
    """Stands in for trt.IBuilderConfig: rejects caches whose bytes say they come from another GPU."""

    def create_timing_cache(self, blob: bytes) -> _FakeCache:
        return _FakeCache(bytes(blob))

    def set_timing_cache(self, cache: _FakeCache, ignore_mismatch: bool) -> bool:
        self.cache = cache
        return ignore_mismatch or cache.blob != b"other-gpu"


@pytest.mark.parametrize("existing", [None, b"old", b"other-gpu"])
def test_timing_cache_round_trip(tmp_path, existing: bytes | None) -> None:
    from latkit.backends.trt import TensorRTBackend

    path = tmp_path / "sub" / "timing.cache"
    if existing is not None:
        path.parent.mkdir()
        path.write_bytes(existing)
    backend = TensorRTBackend(timing_cache=str(path))
    build = _FakeBuilderConfig()
    cache = backend._load_timing_cache(build)
    assert build.cache is cache
    assert cache.blob == (b"old" if existing == b"old" else b"")
    backend._save_timing_cache(cache)
    assert path.read_bytes() == cache.blob + b"+grown"
    assert [p.name for p in path.parent.iterdir()] == ["timing.cache"]  # no temporary file left behind


def test_timing_cache_is_keyed_by_gpu_tensorrt_and_cuda() -> None:
    from latkit.backends.trt import TensorRTBackend, timing_cache_name

    names = {timing_cache_name("NVIDIA H100 80GB HBM3", "9.0", "10.7.0", "12.8"),
             timing_cache_name("NVIDIA H200", "9.0", "10.7.0", "12.8"),
             timing_cache_name("NVIDIA H100 80GB HBM3", "9.0", "10.8.0", "12.8"),
             timing_cache_name("NVIDIA H100 80GB HBM3", "9.0", "10.7.0", "13.0")}
    assert len(names) == 4
    assert timing_cache_name("NVIDIA H100 80GB HBM3", "9.0", "10.7.0", "12.8") == \
        "NVIDIA-H100-80GB-HBM3-sm9.0-trt10.7.0-cuda12.8.cache"
    assert TensorRTBackend(timing_cache="x.cache").timing_cache == Path("x.cache")


def test_builder_settings_are_backend_options() -> None:
    from latkit.backends.trt import TensorRTBackend

    assert TensorRTBackend(fp16=True, optimization_level=5).options() == \
        {"fp16": True, "tf32": True, "optimization_level": 5, "workspace_mib": 1024}
    assert TensorRTBackend().options() != TensorRTBackend(tf32=False).options()


@pytest.mark.parametrize("option, message", [("workspace_mib=-1", "workspace_mib must be >= 1"),
                                             ("optimization_level=9", "optimization_level must be 0..5")])
def test_bad_builder_settings_are_one_line_before_any_build(option: str, message: str, tmp_path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from latkit.cli import main

    assert main(["measure", "--backend", "tensorrt", "--count", "1", "-O", option, "--out",
                 str(tmp_path / "t.parquet")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_measure_tensorrt_defaults_to_its_device_and_says_what_is_missing(tmp_path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from latkit.cli import main

    if get_backend("tensorrt").availability()[0]:
        pytest.skip("TensorRT is available here")
    assert main(["measure", "--backend", "tensorrt", "--count", "1", "--out", str(tmp_path / "t.parquet")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("latkit: error: backend 'tensorrt' on cuda is not available: ") and "not 'cpu'" not in err


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_engine_build_measure_and_parity(tmp_path) -> None:
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install 'latkit[tensorrt]')")
    from latkit.backends.trt import TensorRTBackend

    cache = tmp_path / "timing.cache"
    backend = TensorRTBackend("cuda", timing_cache=cache)
    backend.check_available()
    config = NetConfig(layers=3, channels=8, resolution=16, batch=2)
    model = latkit.network.build(latkit.space.sample(0, 0), config)
    runner = backend.prepare(model)

    timing = measure(runner, MeasureProtocol(warmup_runs=2, warmup_ms=0, repeats=5))
    assert timing.stats.n == 5 and timing.stats.median_ms > 0 and timing.stats.min_ms > 0
    assert cache.is_file() and cache.stat().st_size > 0

    x = runner.x.clone()
    runner.run()
    torch.cuda.synchronize()
    with torch.inference_mode():
        expected = model.to("cuda")(x)
    torch.testing.assert_close(runner.y, expected, rtol=1e-2, atol=1e-3)
    assert set(backend.versions()) == {"tensorrt", "torch", "cuda"}
