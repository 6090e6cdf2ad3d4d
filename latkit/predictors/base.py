"""The predictor interface: fit on encodings and latencies, predict milliseconds, save and load without pickle.

A saved predictor is a directory: ``predictor.json`` (kind, hyper-parameters, metadata) plus the kind's own weight
file (safetensors for the torch models, XGBoost's UBJSON for trees). Metadata records backend, device fingerprint,
dataset hash, encoding version, training size and held-out metrics; ``sha256`` the digest of every other file of the
directory (a transfer predictor's ``prior_*`` included), so weights from another save are refused. A directory is
written whole (a temporary sibling renamed over it). A predictor.json without digests (saved by a latkit before
them) is read as before; the embedded ones record theirs.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, TypeVar

import numpy as np

from latkit.atomic import created_mode, fsync_dir, nearest_existing, remove_stale, temp_prefix
from latkit.errors import LatkitError, LatkitWarning, one_line
from latkit.space import ENCODING_SIZE, ENCODING_VERSION, Genotype

META_FILE = "predictor.json"
DIGESTS = "sha256"  # predictor.json's key: each other file of the directory (relative path) -> its sha256


@dataclass(frozen=True)
class KindInfo:
    """What latkit needs to know of a predictor kind, said once where the kind is defined (``register``)."""

    cls: type["Predictor"]
    min_rows: int | None  # below this many rows a from-scratch fit is mostly noise; None: never fitted from scratch
    weights: str  # the weight file of a saved directory, beside predictor.json

    @property
    def differentiable(self) -> bool:
        """Whether every instance is differentiable (a transfer predictor is only if its priors are)."""
        return self.cls.differentiable is True

    @property
    def from_scratch(self) -> bool:
        return self.min_rows is not None


# The one registry of predictor kinds, kind -> KindInfo, filled by ``register`` as each class is defined
# (latkit.predictors imports them all), so loading a directory needs no module above this one. Nothing else lists
# kinds: the CLI's choices, fitting, the benchmarks, transfer and the loader read this.
KINDS: dict[str, KindInfo] = {}
P = TypeVar("P", bound=type["Predictor"])


def register(kind: str, *, min_rows: int | None, weights: str) -> Callable[[P], P]:
    """Class decorator: register a predictor kind (timm's ``@register_model`` habit)."""
    def wrap(cls: P) -> P:
        if kind in KINDS:
            raise ValueError(f"predictor kind {kind!r} is registered twice")
        cls.kind = kind
        KINDS[kind] = KindInfo(cls, min_rows, weights)
        return cls
    return wrap


def list_predictors() -> list[str]:
    """The kinds ``latkit fit`` can fit from a dataset alone, in registration order."""
    return [kind for kind, info in KINDS.items() if info.from_scratch]


def make_predictor(kind: str, **params: Any) -> "Predictor":
    """A new, unfitted predictor of a from-scratch kind."""
    if kind not in list_predictors():
        raise PredictorError(f"unknown predictor {kind!r} (known: {', '.join(list_predictors())})")
    return KINDS[kind].cls(**params)


class PredictorError(LatkitError):
    """A predictor that cannot be loaded or used as asked."""


class Predictor(ABC):
    """Maps architecture encodings ``(n, ENCODING_SIZE)`` to latency in milliseconds."""

    kind: ClassVar[str]  # set by ``register``
    differentiable: ClassVar[bool] = False

    def __init__(self, **params: Any):
        self.params: dict[str, Any] = params
        self.meta: dict[str, Any] = {}

    @abstractmethod
    def fit(self, x: np.ndarray, y_ms: np.ndarray, seed: int = 0) -> dict[str, Any]:
        """Train; returns a short report (e.g. epochs run, validation error)."""

    @abstractmethod
    def predict_ms(self, x: np.ndarray) -> np.ndarray:
        """Latency in ms for each row of ``x``."""

    def torch_ms(self, x: "torch.Tensor") -> "torch.Tensor":  # noqa: F821
        """Differentiable latency in ms for encodings (or softmax(alpha) in the encoding layout)."""
        raise PredictorError(f"the {self.kind!r} predictor is not differentiable; the search needs one of: "
                             f"{', '.join(differentiable_kinds())}")

    def interval_ms(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The calibrated prediction interval (lower, upper ms) at ``meta["interval"]["level"]``: the prediction
        times 1 -+ the conformal quantile of the relative residuals measured when it was fitted."""
        interval = self.meta.get("interval")
        if not interval:
            raise PredictorError("this predictor has no calibrated interval (fitted by an older latkit): refit it "
                                 "with latkit fit")
        pred = self.predict_ms(x)
        return pred * (1 - interval["rel"]), pred * (1 + interval["rel"])

    def weights_path(self, directory: Path) -> Path:
        """The kind's weight file in a saved directory (its name is registered with the kind)."""
        return Path(directory) / KINDS[self.kind].weights

    @abstractmethod
    def _save_weights(self, directory: Path) -> None: ...

    @abstractmethod
    def _load_weights(self, directory: Path) -> None: ...

    def save(self, directory: str | Path) -> Path:
        """Write ``directory`` whole: weights and predictor.json (with their digests) into a temporary sibling,
        renamed over it, so a crash leaves the old directory or the new one, never a mix. An existing directory is
        replaced only if it is a saved predictor (or empty)."""
        directory = check_save_path(Path(directory))
        directory.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(directory)
        tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=temp_prefix(directory), suffix=".tmp"))
        try:
            try:
                self._save_weights(tmp)
            except Exception as exc:  # OSError, or the weight library's own error for one (a full disk)
                raise PredictorError(f"cannot save the predictor to {directory}: {one_line(exc)}; nothing there "
                                     "was replaced") from None
            doc = {"kind": self.kind, "params": self.params, "meta": self.meta, "encoding_version": ENCODING_VERSION,
                   "encoding_size": ENCODING_SIZE, DIGESTS: _digests(tmp)}
            (tmp / META_FILE).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
            for path in [tmp, *tmp.rglob("*")]:  # mkdtemp's 0700 and safetensors' 0600: as any new file
                os.chmod(path, created_mode(directory=path.is_dir()))
                if path.is_file():
                    with open(path, "rb") as f:
                        os.fsync(f.fileno())
            _replace_dir(tmp, directory)
        except OSError as exc:
            raise PredictorError(f"cannot save the predictor to {directory}: {exc.strerror or exc}; nothing there "
                                 "was replaced") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return directory

    @property
    def unit(self) -> str:
        """The unit of its milliseconds: ``normalised`` (fitted on a duet dataset: each latency its ratio to the
        reference timed beside it, times the dataset's frozen baseline, the host's fast state) or ``raw`` (the
        milliseconds of the host that measured the dataset, on its day)."""
        return "normalised" if self.meta.get("normalised") else "raw"

    def in_unit_ms(self, min_ms: float, ratio: float | None) -> float | None:
        """A measurement (its min and its ratio to the reference timed beside it) in this predictor's unit: the
        ratio times the baseline if normalised, the raw min if raw; None if it cannot be said (no ratio, or a
        predictor of another statistic)."""
        if self.unit == "raw":
            return min_ms
        if ratio is None or self.meta.get("stat", "min_ms") != "min_ms" or not self.meta.get("baseline_ms"):
            return None
        return ratio * float(self.meta["baseline_ms"])

    def check_target(self, backend: str, device: str, force: bool = False) -> None:
        """Refuse a predictor fitted for another backend or device; with ``force``, only warn."""
        mine = (self.meta.get("backend"), self.meta.get("device"))
        if mine == (backend, device):
            return
        message = f"this predictor was fitted on {mine[0]}/{mine[1]} latencies, not {backend}/{device}"
        if not force:
            raise PredictorError(f"{message}: pass the target's own predictor, or --force-predictor to use it anyway")
        warnings.warn(f"{message}: its numbers describe the other target", LatkitWarning, stacklevel=2)

    @staticmethod
    def _check_input(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != ENCODING_SIZE:
            raise PredictorError(f"expected encodings of shape (n, {ENCODING_SIZE}), got {x.shape}")
        return x


def warn_unidentified(genotype: Genotype) -> None:
    """A LatkitWarning when ``genotype`` keeps a 'none' edge (SNAS's cells do): every architecture of a latency
    dataset keeps two real ops per node, so no dataset says what 'none' costs, and a prediction of it (and its
    interval) is not backed by data."""
    kept = [sum(op == "none" for op, _ in cell) for cell in (genotype.normal, genotype.reduce)]
    if any(kept):
        warnings.warn(f"the genotype keeps {sum(kept)} 'none' edge(s) ({kept[0]} in the normal cell, {kept[1]} in "
                      "the reduction cell): every architecture a latency dataset holds keeps two real ops per node, "
                      "so no predictor has seen what 'none' costs; this prediction and its interval count it as "
                      "free, unchecked (measure it: latkit export, latkit bench)", LatkitWarning, stacklevel=2)


def differentiable_kinds() -> list[str]:
    """The from-scratch kinds whose every instance is differentiable (what a search can be given)."""
    return [kind for kind in list_predictors() if KINDS[kind].differentiable]


def conformal_rel(residual_rel: np.ndarray, level: float) -> tuple[float, float]:
    """The split-conformal half-width and the level it guarantees: the ceil((n + 1) level)-th smallest relative
    residual (|y - pred| / pred), so that a new architecture's latency falls within prediction * (1 -+ it) with
    probability >= ``level``. With fewer than ``level / (1 - level)`` residuals (9 at 90%) no finite width reaches
    ``level``: the largest residual is returned with the level it does guarantee, ``n / (n + 1)``."""
    scores = np.sort(np.abs(np.asarray(residual_rel, dtype=np.float64)))
    n = len(scores)
    k = int(np.ceil((n + 1) * level))
    return (float(scores[k - 1]), level) if k <= n else (float(scores[-1]), n / (n + 1))


def read_meta(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / META_FILE
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise PredictorError(f"{directory} is not a saved predictor (no {META_FILE})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PredictorError(f"{path} is corrupt: {getattr(exc, 'msg', None) or exc.reason}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("kind"), str) or not isinstance(doc.get("params"), dict) \
            or not isinstance(doc.get("meta"), dict):
        raise PredictorError(f"{path} is not a latkit predictor: it needs an object with 'kind' (a string), 'params' "
                             "and 'meta' (objects)")
    if doc.get("encoding_version") != ENCODING_VERSION:
        raise PredictorError(f"{directory} uses encoding v{doc.get('encoding_version')}, latkit uses "
                             f"v{ENCODING_VERSION}: refit it")
    return doc


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _digests(directory: Path) -> dict[str, str]:
    """The sha256 of every file under ``directory`` but its predictor.json, by relative path."""
    return {p.relative_to(directory).as_posix(): _sha256(p) for p in sorted(directory.rglob("*"))
            if p.is_file() and p != directory / META_FILE}


def check_digests(directory: Path, doc: dict[str, Any]) -> None:
    """Each file predictor.json records a digest of must be there with that digest (none recorded: a directory
    saved before latkit recorded them is read as it is)."""
    recorded = doc.get(DIGESTS)
    if recorded is None:
        return
    if not isinstance(recorded, dict) or not all(isinstance(v, str) for v in recorded.values()):
        raise PredictorError(f"{directory / META_FILE} is not a latkit predictor: {DIGESTS!r} must map file names to "
                             "digests")
    for name, digest in recorded.items():
        try:
            actual = _sha256(directory / name)
        except OSError:
            actual = None
        if actual != digest:
            what = "is missing" if actual is None else "differs from the one saved with its predictor.json"
            raise PredictorError(f"{directory}: {name} {what} (a file from another save, or a damaged one); refit "
                                 "the predictor or save it again")


def check_save_path(directory: Path) -> Path:
    """Where ``save`` may write ``directory``: the directory a symlink points to; refused where it would replace
    a file or a directory that is not a saved predictor, or under a file (the CLI asks before fitting)."""
    directory = Path(directory)
    parent = nearest_existing(directory)
    if not parent.is_dir():
        raise PredictorError(f"cannot save a predictor to {directory}: {parent} is a file, not a directory")
    if directory.is_symlink():
        directory = Path(os.path.realpath(directory))
    if directory.exists():
        if not directory.is_dir():
            raise PredictorError(f"cannot save a predictor to {directory}: it is a file, not a directory")
        if any(directory.iterdir()) and not (directory / META_FILE).is_file():
            raise PredictorError(f"cannot save a predictor to {directory}: it holds other files, not a saved "
                                 "predictor (saving replaces the directory whole); choose a new directory")
    return directory


def _replace_dir(new: Path, directory: Path) -> None:
    """Rename ``new`` to ``directory``, the old one (if any) moved aside first and then removed."""
    old = directory.parent / f"{temp_prefix(directory)}{uuid.uuid4().hex[:8]}.tmp"
    if directory.exists():
        os.rename(directory, old)
    try:
        os.rename(new, directory)
    except OSError:
        if old.exists():
            os.rename(old, directory)
        raise
    fsync_dir(directory.parent)
    shutil.rmtree(old, ignore_errors=True)


def load_dir(directory: str | Path) -> Predictor:
    """The predictor saved in ``directory`` (any kind, a transfer predictor's priors included); its files must
    match the digests its predictor.json records."""
    doc = read_meta(directory)
    check_digests(Path(directory), doc)
    if doc["kind"] not in KINDS:
        raise PredictorError(f"{directory}: unknown predictor kind {doc['kind']!r} (known: {', '.join(KINDS)})")
    try:
        predictor = KINDS[doc["kind"]].cls(**doc["params"])
    except (TypeError, ValueError) as exc:
        raise PredictorError(f"{directory}: parameters that a {doc['kind']} predictor does not take ({exc})") from None
    predictor.meta = doc["meta"]
    try:
        predictor._load_weights(Path(directory))
    except PredictorError:  # already one line naming the directory (a transfer predictor's priors)
        raise
    except Exception as exc:  # safetensors, torch and xgboost each raise their own on a corrupt or missing file
        raise PredictorError(f"{directory}: the {doc['kind']} predictor's weights cannot be read "
                             f"({type(exc).__name__}: {one_line(exc, 200)}); refit it") from None
    return predictor
