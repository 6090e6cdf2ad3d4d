"""The search loop: alternate DARTS architecture and weight steps, log an epoch line, checkpoint every epoch.

Weights: SGD lr 0.025 cosine to 0.001, momentum 0.9, wd 3e-4, grad clip 5. Alphas: Adam lr 3e-4, betas
(0.5, 0.999), wd 1e-3. The training set is split in halves: one for the weights, one for the alphas.
The checkpoint (``checkpoint.safetensors`` + ``checkpoint.json``, written atomically) lets an interrupted search
resume at the next epoch; batch order depends only on (seed, epoch), so a resumed run repeats an uninterrupted one.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from latkit.atomic import atomic_path, write_bytes
from latkit.errors import LatkitError
from latkit.ops import parameter_free_ops
from latkit.search.architect import Architect
from latkit.search.data import load_data, split_half
from latkit.search.penalty import LatencyPenalty
from latkit.search.supernet import SuperNet
from latkit.space import Genotype, encode_many

CHECKPOINT_VERSION = 1
W_LR, W_LR_MIN, W_MOMENTUM, W_DECAY, GRAD_CLIP = 0.025, 0.001, 0.9, 3e-4, 5.0
A_LR, A_BETAS, A_DECAY = 3e-4, (0.5, 0.999), 1e-3

Log = Callable[[str], None]
BatchProgress = Callable[[int, int, float], None]  # (batch done, batches in the epoch, running mean loss)


def cosine_lr(epoch: int, epochs: int, lr_max: float, lr_min: float) -> float:
    """Cosine annealing from ``lr_max`` (epoch 0) toward ``lr_min`` over ``epochs`` (CosineAnnealingLR's value)."""
    return lr_min + (lr_max - lr_min) * (1 + math.cos(math.pi * epoch / epochs)) / 2


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The shuffling RNG of one epoch: depends only on (seed, epoch), so resuming repeats the same batches."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def genotype_latency_ms(predictor: Any, genotype: Genotype) -> Optional[float]:
    """The predictor's latency of a discrete genotype (one-hot encoding); None without a predictor."""
    if predictor is None:
        return None
    return float(np.asarray(predictor.predict_ms(encode_many([genotype]))).reshape(-1)[0])


def batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Shuffled index batches; a trailing batch of one image is dropped (BatchNorm needs two)."""
    order = torch.randperm(n, generator=generator)
    out = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    return [b for b in out if len(b) > 1]


def run_search(out: str | Path, *, penalty: Optional[LatencyPenalty] = None, predictor: Any = None,
               lam: float = 0.0, form: str = "additive", reference_ms: Optional[float] = None,
               target_ms: Optional[float] = None, data: str = "digits", data_dir: Optional[str | Path] = None,
               resolution: Optional[int] = None, limit: Optional[int] = None, epochs: int = 50,
               batch_size: int = 64, order: int = 1, device: str | torch.device = "cpu", layers: int = 8,
               channels: int = 16, seed: int = 0, log: Optional[Log] = None,
               progress: Optional[BatchProgress] = None, combine: str = "sum",
               max_skip: Optional[int] = None, max_free: Optional[int] = None,
               beta_decay: float = 0.0) -> dict[str, Any]:
    """Run (or resume) a latency-aware DARTS search; returns the final genotype, its predicted latency, history.

    Give either ``penalty`` or ``predictor`` (+ ``lam``, ``form``, ...; a list of predictors penalises several
    targets, combined by ``combine``: ``LatencyPenalty``). ``lam == 0`` is plain DARTS; the
    predictor, when given, still reports each epoch's derived genotype latency. The cosine schedule spans the
    ``epochs`` of the current call, so resuming with more epochs stretches the rest of the schedule.
    ``progress(batch, batches, running_loss)`` is called after every weight step. ``max_skip``: P-DARTS' limit on
    the normal cell's skip connections at derivation (``derive_genotype``; it changes no training step, so a
    search resumes with another); ``max_free`` bounds every parameter-free op of the normal cell the same way.
    ``beta_decay``: beta-DARTS' regulariser on the alphas (``beta_regulariser``), its weight rising linearly from 0
    at the first epoch to ``beta_decay`` at the last. The result counts each cell's parameter-free ops (``cells``)
    and warns when the normal cell has collapsed into skip connections (``warnings``).
    """
    for bound, name in ((max_skip, "max_skip"), (max_free, "max_free")):
        if bound is not None and bound < 0:
            raise LatkitError(f"{name} must be >= 0, got {bound}")
    if not (math.isfinite(beta_decay) and beta_decay >= 0):
        raise LatkitError(f"beta_decay must be a finite number >= 0, got {beta_decay}")
    if order not in (1, 2):
        raise LatkitError(f"order must be 1 (first-order DARTS) or 2 (second order, unrolled), got {order}")
    if epochs < 1 or batch_size < 2:
        raise LatkitError(f"need epochs >= 1 and batch size >= 2, got epochs={epochs}, batch size={batch_size}")
    if penalty is None:
        penalty = LatencyPenalty(predictor, lam, form, reference_ms=reference_ms, target_ms=target_ms,
                                 combine=combine)
    predictor = penalty.predictor
    log = log or (lambda line: None)
    device = torch.device(device)
    out = Path(out)

    torch.manual_seed(seed)
    train, _, classes, in_channels = load_data(data, data_dir, resolution=resolution, seed=seed, limit=limit)
    resolution = int(train.tensors[0].shape[-1])
    w_data, a_data = split_half(train, seed)
    w_x, w_y = (t.to(device) for t in w_data.tensors)
    a_x, a_y = (t.to(device) for t in a_data.tensors)

    model = SuperNet(channels=channels, layers=layers, classes=classes, in_channels=in_channels).to(device)
    w_opt = torch.optim.SGD(model.weights(), lr=W_LR, momentum=W_MOMENTUM, weight_decay=W_DECAY)

    beta_weight = 0.0  # this epoch's weight of the beta-DARTS term

    def objective(net: SuperNet, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = penalty(F.cross_entropy(net(x), y), net.arch_weights())[0]
        return loss + beta_weight * beta_regulariser(net.arch_parameters()) if beta_weight else loss

    architect = Architect(model, objective, lr=A_LR, betas=A_BETAS, weight_decay=A_DECAY,
                          network_momentum=W_MOMENTUM, network_weight_decay=W_DECAY)
    settings = {"data": data, "data_dir": None if data_dir is None else str(Path(data_dir).resolve()),
                "resolution": resolution, "limit": limit, "batch_size": batch_size, "order": order,
                "layers": layers, "channels": channels, "seed": seed, "penalty": penalty.settings()}
    if beta_decay:  # absent when off, so checkpoints written before the option resume
        settings["beta_decay"] = beta_decay
    history: list[dict[str, Any]] = []
    if (out / "checkpoint.json").exists():
        history = load_checkpoint(out, settings, model, {"w_opt": w_opt, "a_opt": architect.optimizer})
        if history:
            log(f"resuming {out} after epoch {len(history)}")

    start = time.perf_counter()
    elapsed_before = history[-1]["elapsed_s"] if history else 0.0
    for epoch in range(len(history), epochs):
        t0 = time.perf_counter()
        lr = cosine_lr(epoch, epochs, W_LR, W_LR_MIN)
        beta_weight = beta_decay * epoch / max(epochs - 1, 1)
        for group in w_opt.param_groups:
            group["lr"] = lr
        g = epoch_generator(seed, epoch)
        w_batches, a_batches = batches(len(w_y), batch_size, g), batches(len(a_y), batch_size, g)
        model.train()
        loss_sum, correct, seen, val_obj = 0.0, 0, 0, 0.0
        for step, idx in enumerate(w_batches):
            a_idx = a_batches[step % len(a_batches)]
            x, y = w_x[idx], w_y[idx]
            val_obj += architect.step(x, y, a_x[a_idx], a_y[a_idx], lr, w_opt, order)
            batch_loss, batch_correct = weight_step(model, model.weights(), w_opt, x, y)
            loss_sum, correct, seen = loss_sum + batch_loss, correct + batch_correct, seen + len(y)
            if progress is not None:
                progress(step + 1, len(w_batches), loss_sum / seen)
        val_acc = accuracy(model, a_x, a_y, batch_size)
        genotype = model.genotype(max_skip, max_free)
        with torch.no_grad():
            soft = float(penalty.latency_ms(model.arch_weights())) if penalty.lam > 0 else None
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1),
               "val_objective": val_obj / max(len(w_batches), 1), "val_acc": val_acc,
               "latency_ms": genotype_latency_ms(predictor, genotype), "soft_latency_ms": soft,
               "genotype": str(genotype), "epoch_s": time.perf_counter() - t0,
               "elapsed_s": elapsed_before + time.perf_counter() - start}
        history.append(row)
        save_checkpoint(out, settings, model, {"w_opt": w_opt, "a_opt": architect.optimizer}, history)
        log(format_row(row, epochs, getattr(predictor, "unit", "")))

    genotype = model.genotype(max_skip, max_free)
    warning = collapse_warning(genotype)
    if warning:
        log(f"warning: {warning}")
    result = {"genotype": str(genotype), "genotype_json": genotype.to_dict(), "max_skip": max_skip, "max_free": max_free,
              "beta_decay": beta_decay,
              "cells": cell_report(genotype), "warnings": [warning] if warning else [],
              "latency_ms": genotype_latency_ms(predictor, genotype), "history": history, "settings": settings,
              "alphas": {"normal": model.alphas_normal.detach().cpu().tolist(),
                         "reduce": model.alphas_reduce.detach().cpu().tolist()}}
    if len(penalty.predictors) > 1:  # several targets: each one's predicted latency of the genotype
        result["latencies_ms"] = {target_name(p): genotype_latency_ms(p, genotype) for p in penalty.predictors}
    return result


def beta_regulariser(alphas: Any) -> torch.Tensor:
    """beta-DARTS' "beta-decay" term (Ye et al., CVPR 2022): per cell type, the mean over edges of logsumexp(alpha),
    summed. Its gradient is softmax(alpha), so it holds the alphas' scale down and with it the runaway of one op
    (the collapse into parameter-free ops) while keeping their order."""
    return sum(torch.logsumexp(a, dim=-1).mean() for a in alphas)


SKIP_BOUND = 2  # P-DARTS keeps at most 2 skip connections in the normal cell; DARTS+ stops a search at 2


def cell_report(genotype: Genotype) -> dict[str, dict[str, int]]:
    """Per cell, how many of its 8 ops have no weights (pools, skip) and how many are skip connections."""
    free = parameter_free_ops()
    return {cell: {"parameter_free": sum(op in free for op, _ in edges),
                   "skip_connect": sum(op == "skip_connect" for op, _ in edges)}
            for cell, edges in (("normal", genotype.normal), ("reduce", genotype.reduce))}


def collapse_warning(genotype: Genotype) -> Optional[str]:
    """One line when the normal cell holds more skip connections than ``SKIP_BOUND``, naming the remedy."""
    skips = cell_report(genotype)["normal"]["skip_connect"]
    if skips <= SKIP_BOUND:
        return None
    return (f"the normal cell has {skips} skip connections (P-DARTS and DARTS+ bound them at {SKIP_BOUND}): the "
            "skip-connection collapse of DARTS, which a latency penalty feeds (a parameter-free op is the cheapest "
            f"way to cut latency), costs accuracy; search again with a smaller lambda, or with --max-skip {SKIP_BOUND} "
            "(P-DARTS' rule at derivation: it bounds skips only, and on latkit's seeded sweep pools took their places; "
            "benchmarks/RESULTS.md)")


def target_name(predictor: Any) -> str:
    """``backend/device`` of the latencies a predictor was fitted on."""
    meta = getattr(predictor, "meta", None) or {}
    return f"{meta.get('backend')}/{meta.get('device')}"


def weight_step(model: torch.nn.Module, params: Any, opt: torch.optim.Optimizer, x: torch.Tensor,
                y: torch.Tensor) -> tuple[float, int]:
    """One clipped SGD step on cross-entropy; returns (loss summed over the batch, correct predictions)."""
    opt.zero_grad()
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
    opt.step()
    return float(loss.detach()) * len(y), int((logits.argmax(1) == y).sum())


def format_row(row: dict[str, Any], epochs: int, unit: str = "") -> str:
    """The one log line of an epoch (``unit``: the predictor's, normalised or raw)."""
    lat = "n/a" if row["latency_ms"] is None else f"{row['latency_ms']:.3f} ms {unit}".rstrip()
    return (f"epoch {row['epoch']}/{epochs}  train_loss {row['train_loss']:.4f}  train_acc {100 * row['train_acc']:.2f}%"
            f"  val_acc {100 * row['val_acc']:.2f}%  predicted latency {lat}  elapsed {row['elapsed_s']:.1f} s")


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    """Top-1 accuracy in eval mode (BatchNorm running statistics); restores the previous mode."""
    was_training = model.training
    model.eval()
    correct = sum(int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
                  for i in range(0, len(y), batch_size))
    model.train(was_training)
    return correct / max(len(y), 1)


def save_checkpoint(out: Path, settings: dict[str, Any], model: torch.nn.Module,
                    optimizers: dict[str, torch.optim.Optimizer], history: list[dict[str, Any]]) -> None:
    """Tensors (model, alphas, optimizer buffers) to safetensors; scalars, settings and history to JSON.

    Shared by the search and the training (``settings["kind"] == "train"``)."""
    out.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    scalars: dict[str, Any] = {}
    for name, opt in optimizers.items():
        for idx, state in opt.state_dict()["state"].items():
            for key, value in state.items():
                if torch.is_tensor(value):
                    tensors[f"{name}.{idx}.{key}"] = value.detach().cpu().contiguous()
                else:
                    scalars[f"{name}.{idx}.{key}"] = value
    epoch = len(history)
    with atomic_path(out / "checkpoint.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"epoch": str(epoch)})
    doc = {"version": CHECKPOINT_VERSION, "epoch": epoch, "settings": settings, "optimizer_scalars": scalars,
           "rng": {"seed": settings["seed"], "epoch_seed": "seed * 1000003 + epoch"}, "history": history}
    write_bytes(out / "checkpoint.json", (json.dumps(doc, indent=1) + "\n").encode())


def load_checkpoint(out: Path, settings: dict[str, Any], model: torch.nn.Module,
                    optimizers: dict[str, torch.optim.Optimizer]) -> list[dict[str, Any]]:
    """Restore model and optimizer state from ``out`` (load_state_dict moves them to the parameters' device);
    returns the history. A checkpoint of other settings is a LatkitError."""
    try:
        doc = json.loads((out / "checkpoint.json").read_text())
    except json.JSONDecodeError as exc:
        raise LatkitError(f"{out / 'checkpoint.json'} is corrupt: {exc.msg}") from None
    if doc.get("version") != CHECKPOINT_VERSION:
        raise LatkitError(f"{out} holds a checkpoint of version {doc.get('version')}, expected {CHECKPOINT_VERSION}")
    saved = json.loads(json.dumps(settings))  # same JSON normalisation as the stored copy
    if doc["settings"] != saved:
        diff = sorted(k for k in set(saved) | set(doc["settings"]) if saved.get(k) != doc["settings"].get(k))
        what = doc["settings"].get("kind", "search")
        raise LatkitError(f"{out} holds a {what} checkpoint with other settings ({', '.join(diff)} differ): "
                          "use another directory or the same settings to resume")
    path = out / "checkpoint.safetensors"
    if not path.exists():
        raise LatkitError(f"{path} is missing: the checkpoint is incomplete")
    with safe_open(str(path), framework="pt", device="cpu") as f:
        if (f.metadata() or {}).get("epoch") != str(doc["epoch"]):
            raise LatkitError(f"{out}: checkpoint files disagree on the epoch (interrupted while writing); "
                              "delete them to restart")
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    for name, opt in optimizers.items():
        state: dict[int, dict[str, Any]] = {}
        for key, value in list(tensors.items()) + list(doc["optimizer_scalars"].items()):
            if key.startswith(name + "."):
                _, idx, field = key.split(".", 2)
                state.setdefault(int(idx), {})[field] = value
        opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})
    return list(doc["history"])
