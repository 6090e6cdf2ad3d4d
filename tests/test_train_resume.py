"""Resumable training (checkpoint every epoch, same result as an uninterrupted run) and per-batch progress."""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import latkit.search.train as train_module
from latkit.cli import build_parser, main
from latkit.errors import LatkitError
from latkit.search.searcher import run_search
from latkit.search.train import train_genotype
from latkit.space import PUBLISHED

TRAIN = dict(data="digits", limit=64, resolution=8, layers=3, channels=4, epochs=3, batch_size=32, seed=0)
CLI = ["train", "DARTS_V2", "--epochs", "3", "--layers", "3", "--channels", "4", "--limit", "64",
       "--resolution", "8", "--batch-size", "32", "--threads", "1"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _curve(result: dict[str, Any]) -> list[float]:
    """Train loss, train accuracy and test accuracy of every epoch, flat."""
    return [row[key] for row in result["history"] for key in ("train_loss", "train_acc", "test_acc")]


def _interrupt_after(calls: int):
    """A progress callback that raises KeyboardInterrupt on its ``calls``-th call (a user's Ctrl-C mid-epoch)."""
    seen: list[tuple[int, int, float]] = []

    def progress(batch: int, batches: int, running_loss: float) -> None:
        seen.append((batch, batches, running_loss))
        if len(seen) == calls:
            raise KeyboardInterrupt
    return progress, seen


def test_interrupted_training_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    genotype = PUBLISHED["DARTS_V2"]
    straight = train_genotype(genotype, out=tmp_path / "a", **TRAIN)
    assert (tmp_path / "a" / "checkpoint.safetensors").exists()
    assert json.loads((tmp_path / "a" / "checkpoint.json").read_text())["epoch"] == 3

    progress, seen = _interrupt_after(3)  # 64 images / 32 = 2 batches an epoch: stop in epoch 2's first batch
    with pytest.raises(KeyboardInterrupt):
        train_genotype(genotype, out=tmp_path / "b", progress=progress, **TRAIN)
    assert [s[:2] for s in seen] == [(1, 2), (2, 2), (1, 2)]
    assert json.loads((tmp_path / "b" / "checkpoint.json").read_text())["epoch"] == 1

    lines: list[str] = []
    resumed = train_genotype(genotype, out=tmp_path / "b", log=lines.append, **TRAIN)
    assert lines[0].startswith(f"resuming {tmp_path / 'b'} after epoch 1") and lines[1].startswith("epoch 2/3")
    assert _curve(resumed) == pytest.approx(_curve(straight), abs=1e-6)
    assert resumed["test_accuracy"] == straight["test_accuracy"] and resumed["params"] == straight["params"]
    assert train_genotype(genotype, **TRAIN)["history"][-1]["test_acc"] == straight["test_accuracy"]  # no dir: same

    again = train_genotype(genotype, out=tmp_path / "b", log=lines.append, **TRAIN)  # finished: nothing to train
    assert _curve(again) == _curve(resumed) and lines[-1].startswith("resuming")


def test_training_refuses_a_checkpoint_of_other_settings(tmp_path: Path) -> None:
    one = dict(TRAIN, epochs=1)
    train_genotype(PUBLISHED["DARTS_V2"], out=tmp_path, **one)
    for change in (dict(epochs=2), dict(seed=1), dict(channels=6), dict(lr=0.05)):
        with pytest.raises(LatkitError, match=r"holds a train checkpoint with other settings") as err:
            train_genotype(PUBLISHED["DARTS_V2"], out=tmp_path, **{**one, **change})
        assert "\n" not in str(err.value) and next(iter(change)) in str(err.value)
    with pytest.raises(LatkitError, match="genotype"):
        train_genotype(PUBLISHED["DARTS_V1"], out=tmp_path, **one)
    with pytest.raises(LatkitError, match="holds a train checkpoint"):  # a search cannot take a training's place
        run_search(tmp_path, epochs=1, data="digits", limit=64, resolution=8, layers=3, channels=4, batch_size=32)


def test_search_reports_batches(tmp_path: Path) -> None:
    seen: list[tuple[int, int, float]] = []
    run_search(tmp_path, epochs=2, data="digits", limit=64, resolution=8, layers=3, channels=4, batch_size=16,
               progress=lambda *args: seen.append(args))
    assert [s[:2] for s in seen] == [(1, 2), (2, 2)] * 2  # 32 images for the weights / 16
    assert all(loss > 0 for _, _, loss in seen)


def test_train_cli_resumes_after_ctrl_c(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*CLI, "--out", str(tmp_path / "a.json")]) == 0  # no --out-dir: no checkpoint, as before
    straight = json.loads((tmp_path / "a.json").read_text())
    capsys.readouterr()

    steps = {"n": 0}
    real_step = train_module.weight_step

    def step_then_ctrl_c(*args: Any) -> tuple[float, int]:
        steps["n"] += 1
        if steps["n"] == 4:  # epoch 2's second batch
            raise KeyboardInterrupt
        return real_step(*args)

    ckpt = tmp_path / "ckpt"
    monkeypatch.setattr(train_module, "weight_step", step_then_ctrl_c)
    assert main([*CLI, "--out-dir", str(ckpt), "--out", str(tmp_path / "b.json")]) == 130
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and f"{ckpt} keeps every finished epoch" in captured.err
    assert "epoch 1/3" in captured.out and "epoch 2/3" not in captured.out
    monkeypatch.setattr(train_module, "weight_step", real_step)

    assert main([*CLI, "--out-dir", str(ckpt), "--out", str(tmp_path / "b.json")]) == 0
    out = capsys.readouterr().out
    assert "resuming" in out and "epoch 1/3" not in out and "epoch 3/3" in out
    resumed = json.loads((tmp_path / "b.json").read_text())
    assert _curve(resumed) == pytest.approx(_curve(straight), abs=1e-6)

    assert main([*CLI, "--epochs", "4", "--out-dir", str(ckpt)]) == 2  # other settings: one line
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "epochs differ" in err
    (tmp_path / "file").write_text("")
    assert main([*CLI, "--out-dir", str(tmp_path / "file")]) == 2


def test_train_cli_draws_a_bar_only_on_a_terminal(tmp_path: Path) -> None:
    args = build_parser().parse_args([*CLI, "--epochs", "1"])
    terminal = Console(file=io.StringIO(), force_terminal=True, width=120)
    assert args.handler(args, terminal) == 0
    assert "2/2" in terminal.file.getvalue() and "loss" in terminal.file.getvalue()

    plain = Console(file=io.StringIO(), force_terminal=False, width=120)
    assert args.handler(args, plain) == 0
    lines = plain.file.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("epoch 1/1") and lines[1].startswith("test accuracy")
