"""Image data for the search and the final training: digits (embedded), CIFAR-10 (local folder), synthetic.

- ``digits``: scikit-learn's 8x8 handwritten digits (ships with scikit-learn, no download), standardised,
  bilinearly resized to the network input and replicated to ``channels``; a fixed per-class 1/5 test split.
- ``cifar10``: the standard python version (``cifar-10-batches-py``), read with a restricted unpickler that only
  rebuilds numpy arrays, never arbitrary objects.
- ``synthetic``: random images with random labels, for speed tests only (nothing to learn).
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from latkit.errors import LatkitError

DATASETS = ("digits", "cifar10", "synthetic")
DEFAULT_RESOLUTION = {"digits": 16, "cifar10": 32, "synthetic": 16}
CIFAR_DIR = "cifar-10-batches-py"
CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
CIFAR_MEAN = (0.49139968, 0.48215827, 0.44653124)
CIFAR_STD = (0.24703233, 0.24348505, 0.26158768)
SYNTHETIC_SIZE = (1024, 256)


def _reconstruct() -> Any:
    try:
        from numpy._core.multiarray import _reconstruct as fn  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct as fn
    return fn


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only; any other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return _reconstruct()
        if module == "numpy" and name == "ndarray":
            return np.ndarray
        if module == "numpy" and name == "dtype":
            return np.dtype
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")


def load_data(name: str, data_dir: Optional[str | Path] = None, resolution: Optional[int] = None,
              channels: int = 3, seed: int = 0,
              limit: Optional[int] = None) -> tuple[TensorDataset, TensorDataset, int, int]:
    """(train, test, number of classes, input channels); ``limit`` caps each split (for quick runs)."""
    if name not in DATASETS:
        raise LatkitError(f"unknown data set {name!r} (known: {', '.join(DATASETS)})")
    resolution = DEFAULT_RESOLUTION[name] if resolution is None else int(resolution)
    if resolution < 4 or resolution % 4:
        raise LatkitError(f"resolution must be a positive multiple of 4 (two stride-2 reductions), got {resolution}")
    if channels < 1:
        raise LatkitError(f"channels must be >= 1, got {channels}")
    if limit is not None and limit < 2:
        raise LatkitError(f"limit must be >= 2 images, got {limit}")
    if name == "digits":
        (x_tr, y_tr), (x_te, y_te) = _digits(seed)
        x_tr, x_te = (x.expand(-1, channels, -1, -1) for x in (x_tr, x_te))
    elif name == "cifar10":
        if channels != 3:
            raise LatkitError(f"CIFAR-10 images have 3 channels, got channels={channels}")
        (x_tr, y_tr), (x_te, y_te) = _cifar10(data_dir)
    else:
        g = torch.Generator().manual_seed(seed)
        x_tr, x_te = (torch.randn(n, channels, resolution, resolution, generator=g) for n in SYNTHETIC_SIZE)
        y_tr, y_te = (torch.randint(0, 10, (n,), generator=g) for n in SYNTHETIC_SIZE)
    classes = int(max(y_tr.max(), y_te.max())) + 1
    splits = []
    for k, (x, y) in enumerate(((x_tr, y_tr), (x_te, y_te))):
        if limit is not None and len(y) > limit:
            keep = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed + k))[:limit]
            x, y = x[keep], y[keep]
        if x.shape[-1] != resolution:
            x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)
        splits.append(TensorDataset(x.contiguous().float(), y.long()))
    return splits[0], splits[1], classes, channels


def split_half(dataset: TensorDataset, seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """Shuffle (by ``seed``) and cut in two halves: one for the weights, one for the alphas (DARTS)."""
    n = len(dataset)
    if n < 2:
        raise LatkitError(f"need at least 2 training images to split, got {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    first, second = order[: n // 2], order[n // 2:]
    return (TensorDataset(*(t[first] for t in dataset.tensors)),
            TensorDataset(*(t[second] for t in dataset.tensors)))


def _digits(seed: int) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.float32) / 16.0
    y = bunch.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):  # per class: 1/5 to the test split
        members = rng.permutation(np.flatnonzero(y == c))
        test[members[: len(members) // 5]] = True
    mean, std = x[~test].mean(), x[~test].std()
    x = torch.from_numpy((x - mean) / std).unsqueeze(1)
    y = torch.from_numpy(y)
    train_idx = torch.from_numpy(rng.permutation(np.flatnonzero(~test)))
    test_idx = torch.from_numpy(np.flatnonzero(test))
    return (x[train_idx], y[train_idx]), (x[test_idx], y[test_idx])


def _cifar_folder(data_dir: Optional[str | Path]) -> Path:
    if data_dir is None:
        raise LatkitError("cifar10 needs --data-dir: the folder of the CIFAR-10 python version "
                          f"({CIFAR_DIR}) or its parent")
    root = Path(data_dir)
    if not root.is_dir():
        raise LatkitError(f"CIFAR-10 folder {root} does not exist")
    folder = root / CIFAR_DIR if (root / CIFAR_DIR).is_dir() else root
    if not all((folder / f).is_file() for f in CIFAR_FILES):
        raise LatkitError(f"expected data_batch_1..5 and test_batch in {folder} (the CIFAR-10 python version)")
    return folder


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            doc = _SafeUnpickler(f, encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise LatkitError(f"{path} is not a CIFAR-10 batch: {exc}") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise LatkitError(f"{path} is not a CIFAR-10 batch: {type(exc).__name__}: {exc}") from None
    if not isinstance(doc, dict) or b"data" not in doc or b"labels" not in doc:
        raise LatkitError(f"{path} is not a CIFAR-10 batch (expected a dict with b'data' and b'labels')")
    data, labels = np.asarray(doc[b"data"]), np.asarray(doc[b"labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels) or data.dtype != np.uint8:
        raise LatkitError(f"{path} is not a CIFAR-10 batch: data {data.shape} {data.dtype}, {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise LatkitError(f"{path} has labels outside 0..9")
    return data, labels


def _cifar10(data_dir: Optional[str | Path]) -> tuple[tuple[torch.Tensor, torch.Tensor],
                                                      tuple[torch.Tensor, torch.Tensor]]:
    folder = _cifar_folder(data_dir)
    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)

    def read(files: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [_read_batch(folder / f) for f in files]
        data = np.concatenate([d for d, _ in parts]).reshape(-1, 3, 32, 32)
        x = (torch.from_numpy(data).float() / 255.0 - mean) / std
        return x, torch.from_numpy(np.concatenate([lab for _, lab in parts]))

    return read(CIFAR_FILES[:5]), read(CIFAR_FILES[5:])
