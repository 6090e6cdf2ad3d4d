"""Anchors: a frozen file's architectures of typical size, re-timed by every later run, so a run on another day (whose
architectures move against the reference) is read back in the file's unit; and calibration by the same anchors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from latkit.backends.base import ModelSource, Runner
from latkit.backends.timing import MeasureProtocol
from latkit.campaign import run_campaign
from latkit.datasets.store import ANCHORS, load, rebase, write
from latkit.measure import REFERENCE
from tests.test_measure import TINY, FixedBackend, Host, _SpinRunner

PROTOCOL = MeasureProtocol(warmup_runs=2, warmup_ms=0, repeats=5)


class DayBackend(FixedBackend):
    """Each architecture spins 0.3 ms plus 0.1 ms per separable convolution; on another ``day`` the architectures
    (not the reference) take ``day`` times as long: what one reference cannot see."""

    def __init__(self, day: float = 1.0) -> None:
        super().__init__()
        self.day, self.host = day, Host()

    def _prepare_impl(self, source: ModelSource, beside: Runner | None = None) -> _SpinRunner:
        g = source.network.genotype
        cost = 0.3 + 0.1 * sum(op.startswith("sep_conv") for op, _ in g.normal + g.reduce)
        return _SpinRunner(cost if source.name == REFERENCE else cost * self.day, self.host)


def test_a_later_run_is_read_back_in_the_files_unit(tmp_path: Path) -> None:
    out, steady = tmp_path / "f.parquet", tmp_path / "steady.parquet"
    run_campaign(DayBackend(), TINY, PROTOCOL, seed=0, count=40, out=out, repeat_every=0)
    first = load(out)
    anchors = first.anchors()
    assert len(anchors) == ANCHORS and set(anchors) <= set(range(40))
    assert not first.levels()  # the run that made the unit re-timed nothing
    run_campaign(DayBackend(1.25), TINY, PROTOCOL, seed=0, count=48, out=out, repeat_every=0, reference_every=3)
    ds = load(out)
    kind = ds.column("kind")
    retimed = ds.column("index")[kind == "anchor"].tolist()  # all first, then one beside each later reference row
    assert retimed[:ANCHORS] == anchors and retimed[ANCHORS:] == anchors[:2]
    (run, level), = ds.levels().items()
    assert level == pytest.approx(1.25, rel=0.08)
    assert ds.anchors() == anchors  # the unit, anchors included, stays frozen
    run_campaign(DayBackend(), TINY, PROTOCOL, seed=0, count=48, out=steady, repeat_every=0)
    later = ds.samples().column("index").to_numpy() >= 40
    norm = ds.latency_ms(ds.samples())[later] / load(steady).latency_ms(load(steady).samples())[40:]
    raw = ds.latency_ms(ds.samples(), normalised=False)[later] / load(steady).latency_ms(
        load(steady).samples(), normalised=False)[40:]
    assert np.all(np.abs(norm - 1) < 0.1), norm  # in the file's unit...
    assert np.median(raw) == pytest.approx(1.25, rel=0.1)  # ...while the raw columns keep what was timed


def test_a_small_file_has_no_anchors_and_rebase_names_them_once(tmp_path: Path) -> None:
    out = tmp_path / "f.parquet"
    run_campaign(DayBackend(), TINY, PROTOCOL, seed=0, count=4 * ANCHORS - 1, out=out, repeat_every=0,
                 reference_every=0)
    assert load(out).frozen and load(out).anchors() == []
    run_campaign(DayBackend(), TINY, PROTOCOL, seed=0, count=4 * ANCHORS, out=out, repeat_every=0, reference_every=0)
    assert not (load(out).column("kind") == "anchor").any()  # nothing to re-time yet
    ds = load(out)
    write(out, {k: v for k, v in ds.header.items() if k != "baseline"}, ds.table)  # a file frozen before anchors:
    rebase(out)
    named = load(out).anchors()
    assert len(named) == ANCHORS
    ratio = {i: r for i, r in zip(ds.samples().column("index").to_pylist(),
                                  ds.samples().column("ratio").to_pylist())}
    ranked = sorted(ratio, key=ratio.get)
    assert ranked[0] not in named and ranked[-1] not in named  # typical sizes, not the extremes
    rebase(out)
    assert load(out).anchors() == named


def test_calibrate_scales_by_the_anchors_timed_here(monkeypatch: pytest.MonkeyPatch) -> None:
    import latkit
    import latkit.measure as measure_module
    from latkit.predictors import make_predictor
    from latkit.space import sample

    rows = iter([{"status": "ok", "min_ms": 2.2, "ref_min_ms": 5.0}, {"status": "ok", "min_ms": 3.3, "ref_min_ms": 4.0},
                 {"status": "ok", "min_ms": 6.0, "ref_min_ms": 4.5}])
    monkeypatch.setattr(measure_module, "time_genotype", lambda *args, **kwargs: next(rows))
    predictor = make_predictor("additive")
    predictor.meta = {"normalised": True, "stat": "min_ms", "baseline_ms": 4.0, "backend": "onnxruntime",
                      "device": "cpu", "config": {"layers": 3, "channels": 4, "resolution": 8}, "protocol": {},
                      "backend_options": {},
                      "anchors": [{"index": i, "genotype": str(sample(0, i)), "ms": ms} for i, ms in
                                  ((0, 2.0), (1, 3.0), (2, 4.0))]}
    cal = latkit.calibrate(predictor)
    assert cal == {"scale": pytest.approx(1.1), "reference_ms": 4.0, "baseline_ms": 4.0, "anchors": 3}


def test_shards_from_two_hosts_merge_each_at_its_own_level(tmp_path: Path) -> None:
    """A frozen file extended by two shards on two hosts (copies of it, merged): each shard's run re-times the
    anchors, so each keeps its own level and the merged file reads both in the file's unit."""
    import shutil

    from latkit.campaign import Shard
    from latkit.datasets.store import merge

    base, steady = tmp_path / "f.parquet", tmp_path / "steady.parquet"
    run_campaign(DayBackend(), TINY, PROTOCOL, seed=0, count=40, out=base, repeat_every=0)
    parts = []
    for k, day in ((1, 1.25), (2, 0.85)):
        part = tmp_path / f"host{k}.parquet"
        shutil.copy(base, part)
        run_campaign(DayBackend(day), TINY, PROTOCOL, seed=0, count=60, out=part, shard=Shard(k, 2), repeat_every=0)
        parts.append(part)
    merged = tmp_path / "merged.parquet"
    merge(parts, merged)
    ds = load(merged)
    assert sorted(ds.levels().values()) == [pytest.approx(0.85, rel=0.08), pytest.approx(1.25, rel=0.08)]
    samples = ds.samples()
    assert sorted(samples.column("index").to_pylist()) == list(range(60))  # the original rows once, both shards
    run_campaign(DayBackend(), TINY, PROTOCOL, seed=0, count=60, out=steady, repeat_every=0)
    order = np.argsort(samples.column("index").to_numpy())
    norm = ds.latency_ms(samples)[order][40:] / load(steady).latency_ms(load(steady).samples())[40:]
    assert np.all(np.abs(norm - 1) < 0.1), norm
