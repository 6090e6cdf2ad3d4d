"""Train the evaluation network of a genotype from scratch and report its test accuracy.

DARTS' evaluation recipe without the auxiliary head, drop-path or augmentation: SGD lr 0.025 with cosine
annealing to 0, momentum 0.9, weight decay 3e-4, gradient clipping at 5. Given ``out``, training checkpoints
every epoch there in the search's format and a rerun with the same settings resumes after the last finished epoch;
batch order depends only on (seed, epoch), so a resumed run repeats an uninterrupted one.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from latkit.errors import LatkitError
from latkit.network import NetConfig, Network, count_params
from latkit.search.data import load_data
from latkit.search.searcher import (BatchProgress, accuracy, batches, cosine_lr, epoch_generator, load_checkpoint,
                                    save_checkpoint, weight_step)
from latkit.space import Genotype

LR, MOMENTUM, WEIGHT_DECAY = 0.025, 0.9, 3e-4  # gradient clipping (5) lives in weight_step


def train_genotype(genotype: Genotype, data: str = "digits", data_dir: Optional[str] = None, epochs: int = 600,
                   batch_size: int = 96, device: str | torch.device = "cpu", layers: int = 20,
                   channels: int = 36, resolution: Optional[int] = None, limit: Optional[int] = None,
                   seed: int = 0, lr: float = LR, log: Optional[Callable[[str], None]] = None,
                   out: Optional[str | Path] = None, progress: Optional[BatchProgress] = None) -> dict[str, Any]:
    """Train ``Network(genotype)`` on the data's training split; returns test accuracy, params and history.

    ``out``: checkpoint directory (resumes from it; a checkpoint of other settings is a LatkitError).
    ``progress(batch, batches, running_loss)`` is called after every weight step.
    """
    if epochs < 1 or batch_size < 2:
        raise LatkitError(f"need epochs >= 1 and batch size >= 2, got epochs={epochs}, batch size={batch_size}")
    log = log or (lambda line: None)
    device = torch.device(device)
    torch.manual_seed(seed)
    train, test, classes, in_channels = load_data(data, data_dir, resolution=resolution, seed=seed, limit=limit)
    config = NetConfig(layers=layers, channels=channels, resolution=int(train.tensors[0].shape[-1]),
                       in_channels=in_channels, classes=classes, batch=batch_size)
    model = Network(genotype, config).to(device)
    x_tr, y_tr = (t.to(device) for t in train.tensors)
    x_te, y_te = (t.to(device) for t in test.tensors)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    settings = {"kind": "train", "genotype": str(genotype), "data": data,
                "data_dir": None if data_dir is None else str(Path(data_dir).resolve()),
                "resolution": config.resolution, "limit": limit, "epochs": epochs, "batch_size": batch_size,
                "layers": layers, "channels": channels, "seed": seed, "lr": lr}
    history: list[dict[str, Any]] = []
    if out is not None and (Path(out) / "checkpoint.json").exists():
        history = load_checkpoint(Path(out), settings, model, {"opt": opt})
        if history:
            log(f"resuming {out} after epoch {len(history)}")
    start = time.perf_counter()
    elapsed_before_s = history[-1]["elapsed_s"] if history else 0.0
    for epoch in range(len(history), epochs):
        rate = cosine_lr(epoch, epochs, lr, 0.0)
        for group in opt.param_groups:
            group["lr"] = rate
        model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        epoch_batches = batches(len(y_tr), batch_size, epoch_generator(seed, epoch))
        for step, idx in enumerate(epoch_batches):
            batch_loss, batch_correct = weight_step(model, model.parameters(), opt, x_tr[idx], y_tr[idx])
            loss_sum, correct, seen = loss_sum + batch_loss, correct + batch_correct, seen + len(idx)
            if progress is not None:
                progress(step + 1, len(epoch_batches), loss_sum / seen)
        row = {"epoch": epoch + 1, "lr": rate, "train_loss": loss_sum / max(seen, 1),
               "train_acc": correct / max(seen, 1), "test_acc": accuracy(model, x_te, y_te, batch_size),
               "elapsed_s": elapsed_before_s + time.perf_counter() - start}
        history.append(row)
        if out is not None:
            save_checkpoint(Path(out), settings, model, {"opt": opt}, history)
        log(f"epoch {epoch + 1}/{epochs}  train_loss {row['train_loss']:.4f}  train_acc {100 * row['train_acc']:.2f}%"
            f"  test_acc {100 * row['test_acc']:.2f}%  elapsed {row['elapsed_s']:.1f} s")
    return {"test_accuracy": history[-1]["test_acc"], "params": count_params(model), "epochs": epochs,
            "history": history, "genotype": str(genotype), "config": config.to_dict()}
