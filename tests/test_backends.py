"""Every registered backend, parametrised over the registry so a new one is covered automatically."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from latkit.backends.timing import MeasureProtocol, measure
from latkit.backends.registry import backend_class, get_backend, list_backends
from latkit.errors import LatkitError
from latkit.network import NetConfig, build
from latkit.space import sample

TINY = NetConfig(layers=3, channels=8, resolution=16, batch=2)
FAST = MeasureProtocol(warmup_runs=1, warmup_ms=0, repeats=3)
CASES = [(name, device) for name in list_backends() for device in backend_class(name).devices]


def test_importing_latkit_loads_no_optional_runtime() -> None:
    code = ("import sys, latkit, latkit.cli, latkit.backends.registry, latkit.measure; "
            "print(sorted(m for m in ('tensorrt', 'onnxruntime', 'pycuda') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_unknown_backend() -> None:
    with pytest.raises(LatkitError, match="unknown backend 'tvm'"):
        get_backend("tvm")


@pytest.mark.parametrize("name, device", CASES)
def test_availability_and_measurement(name: str, device: str) -> None:
    backend = get_backend(name, device)
    ok, reason = backend.availability()
    assert isinstance(ok, bool) and (ok or reason)
    if not ok:
        with pytest.raises(LatkitError, match="not available"):
            backend.check_available()
        pytest.skip(f"{name} on {device}: {reason}")
    assert backend.versions()
    timing = measure(backend.prepare(build(sample(0, 1), TINY)), FAST)
    assert timing.stats.n == 3 and 0 < timing.stats.min_ms <= timing.stats.median_ms


@pytest.mark.gpu
def test_torch_cuda_events_agree_with_torch_benchmark() -> None:
    from torch.utils import benchmark

    model = build(sample(0, 2), NetConfig(batch=8)).cuda()
    x = torch.randn(8, 3, 32, 32, device="cuda")
    runner = get_backend("torch", "cuda").prepare(model)
    ours = measure(runner, MeasureProtocol(warmup_runs=10, repeats=50)).stats.median_ms
    with torch.inference_mode():
        ref = benchmark.Timer("m(x)", globals={"m": model, "x": x}).blocked_autorange(min_run_time=1).median * 1e3
    assert ours == pytest.approx(ref, rel=0.15)


def test_measuring_on_torch_leaves_the_process_thread_count_alone() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        backend = get_backend("torch", "cpu", threads=1)
        runner = backend.prepare(build(sample(0, 1), TINY))
        seen = []
        runner_run = runner.run
        runner.run = lambda: (seen.append(torch.get_num_threads()), runner_run())
        measure(runner, FAST)
        assert set(seen) == {1}  # timed with the protocol's threads...
        assert torch.get_num_threads() == 2  # ...and the process gets its own back
    finally:
        torch.set_num_threads(before)


def test_a_cuda_runner_without_its_own_stream_is_refused() -> None:
    from latkit.backends.timing import clock_for

    class NoStream:
        device = "cuda"

        def run(self) -> None:
            pass

    with pytest.raises(LatkitError, match="dedicated stream"):
        clock_for(NoStream())


@pytest.mark.gpu
@pytest.mark.parametrize("name", [n for n in list_backends() if "cuda" in backend_class(n).devices])
def test_cuda_runners_time_on_their_own_stream(name: str) -> None:
    backend = get_backend(name, "cuda")
    if not backend.availability()[0]:
        pytest.skip(f"{name} on cuda: {backend.availability()[1]}")
    runner = backend.prepare(build(sample(0, 1), TINY))
    assert runner.stream is not None and runner.stream != torch.cuda.default_stream()
    current = torch.cuda.current_stream()
    timing = measure(runner, FAST)
    assert timing.stats.min_ms > 0 and torch.cuda.current_stream() == current


@pytest.mark.parametrize("field, value", [("warmup_ms", float("inf")), ("warmup_ms", float("nan")),
                                          ("min_cpu_share", float("nan")), ("threads", 0)])
def test_a_protocol_that_cannot_finish_is_refused(field: str, value: float) -> None:
    with pytest.raises(LatkitError, match="invalid protocol"):
        MeasureProtocol(**{field: value})


@pytest.mark.skipif(not __import__("os").path.exists("/proc/cpuinfo"), reason="no /proc/cpuinfo on this OS")
def test_fingerprint_tells_cpus_of_one_model_name_apart() -> None:
    from latkit.env import fingerprint

    from latkit.env import cpu_id

    env = fingerprint("cpu")
    assert " family " in env["cpu_id"] and " stepping " in env["cpu_id"] and " microcode " in env["cpu_id"]
    live = [line.split(":")[1].strip() for line in open("/proc/cpuinfo") if line.startswith("cpu MHz")]
    assert not any(f"{round(float(v))} MHz" in env["cpu_id"] and "max" not in env["cpu_id"] for v in live)
    cpu_id.cache_clear()
    assert cpu_id() == env["cpu_id"]  # read again: the same identity (the live clock is not part of it)


def test_cuda_graph_is_a_cuda_option_recorded_only_when_on(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    from latkit.cli import main

    assert get_backend("torch").options() == {} and get_backend("torch", "cuda").options() == {}  # eager: as before
    graph = get_backend("torch", "cuda", options={"cuda_graph": "true"})
    assert graph.options() == {"cuda_graph": True}  # part of the dataset's identity
    assert main(["measure", "--backend", "torch", "-O", "cuda_graph=true", "--count", "1", "--out",
                 str(tmp_path / "g.parquet")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cuda_graph option replays GPU work: it needs --device cuda" in err
    with pytest.raises(LatkitError, match="reduce-overhead replays CUDA graphs"):
        get_backend("torch-compile", options={"mode": "reduce-overhead"})
    assert get_backend("torch-compile", "cuda", options={"mode": "reduce-overhead"}).options()["mode"] == \
        "reduce-overhead"


@pytest.mark.gpu
def test_cuda_graph_replays_the_forward_and_the_duet_shares_its_stream() -> None:
    from latkit.backends.timing import measure
    from latkit.measure import Reference, reference_source

    config = NetConfig(layers=5, channels=8, resolution=16)
    backend = get_backend("torch", "cuda", options={"cuda_graph": "true"})
    network = build(sample(0, 3), config).cuda().eval()
    reference = Reference(backend, reference_source(config))
    ref_runner = reference.runner()
    runner = backend.prepare(network, beside=ref_runner)
    assert runner.stream is ref_runner.stream  # the reference alternates on the model's stream
    runner.x.normal_()  # replays read the captured input buffer: new values, same graph
    with torch.no_grad():
        expected = network(runner.x)
    runner.activate()
    runner.run()
    runner.deactivate()
    torch.cuda.synchronize()
    torch.testing.assert_close(runner.y, expected, rtol=1e-3, atol=1e-4)  # cuDNN may pick other algorithms
    timing = measure(runner, MeasureProtocol(warmup_runs=2, warmup_ms=0, repeats=10), ref_runner)
    assert timing.stats.min_ms > 0 and timing.reference.min_ms > 0
    runner.close()
    reference.close()


def test_torch_compile_is_measured_in_a_duet(tmp_path) -> None:
    """Each architecture compiled after a Dynamo reset, DARTS_V2 compiled beside it, the pair timed run for run."""
    from latkit.cli import main
    from latkit.datasets.store import load

    ok, why = get_backend("torch-compile").availability()
    if not ok:
        pytest.skip(f"torch-compile: {why}")
    out = tmp_path / "c.parquet"
    assert main(["measure", "--backend", "torch-compile", "--count", "1", "--layers", "3", "--channels", "4",
                 "--resolution", "8", "--repeats", "5", "--out", str(out)]) == 0
    ds = load(out)
    row = ds.samples().to_pylist()[0]
    assert ds.duet and row["status"] == "ok" and row["ref_min_ms"] > 0
    assert row["ratio"] == pytest.approx(row["min_ms"] / row["ref_min_ms"])

