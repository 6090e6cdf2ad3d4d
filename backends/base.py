"""The backend interface: what an adapter implements, and what it prepares from.

A backend is split as in Polygraphy: ``prepare`` builds once (export, compilation, session or engine creation)
from a ``ModelSource`` and returns a ``Runner``, which owns its inputs, outputs and (on CUDA) stream until
``close()``; ``latkit.backends.timing.measure`` runs the one timing loop on it. Backends that read ONNX
(``reads = "onnx"``) get the ONNX bytes only, so they time any ONNX model as well as latkit's networks; torch
backends (``reads = "network"``) need a latkit network. Settings that change the latency beyond the protocol are the
backend's ``Options`` dataclass, recorded in a dataset's identity. Adapters implement only ``_available_impl``,
``versions`` and ``_prepare_impl``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, ClassVar

from latkit.errors import LatkitError
from latkit.network import Network

DEVICES = ("cpu", "cuda")


class BackendUnavailable(LatkitError):
    """The backend's runtime or device is missing here; the message says which and why."""


class Runner:
    """One prepared model: ``run`` enqueues one inference on ``device``.

    ``measure`` calls ``activate()`` and ``deactivate()`` around its whole loop (e.g. to set torch's thread count or
    the CUDA stream, and to give the process its own back afterwards). A CUDA runner has a dedicated ``stream``
    (torch.cuda.Stream) on which it enqueues its work; the timing events are recorded on that stream. ``close()``
    releases what the runner holds (session, engine, buffers); a runner is a context manager.
    """

    device: str = "cpu"
    stream: Any = None

    def run(self) -> None:
        raise NotImplementedError

    def activate(self) -> None:
        """Called before the timing loop."""

    def deactivate(self) -> None:
        """Called after the timing loop, also when it failed."""

    def close(self) -> None:
        """Release the prepared model."""

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class ModelSource:
    """What a backend prepares: a latkit evaluation network, or an ONNX model, and the input shape it runs at.

    The ONNX bytes of a network are written on first use (``onnx()``) and kept, so several ONNX backends share one
    export; ``digest`` is their SHA-256 (a cache key for compiled artifacts).
    """

    input_shape: tuple[int, ...]
    network: Network | None = None
    onnx_bytes: bytes | None = field(default=None, repr=False)
    name: str = "model"

    @classmethod
    def of(cls, network: Network) -> "ModelSource":
        return cls(tuple(network.config.input_shape()), network=network.eval(), name=str(network.genotype))

    def onnx(self) -> bytes:
        if self.onnx_bytes is None:
            from latkit.onnx_export import to_onnx

            self.onnx_bytes = to_onnx(self.network).SerializeToString()
        return self.onnx_bytes

    def digest(self) -> str:
        import hashlib

        return hashlib.sha256(self.onnx()).hexdigest()


@dataclass(frozen=True)
class NoOptions:
    """A backend without settings of its own."""


def parse_options(cls: type, given: dict[str, str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings (the CLI's ``--backend-option``) as typed values of the options dataclass ``cls``."""
    known = {f.name: f for f in fields(cls)}
    out: dict[str, Any] = {}
    for key, text in given.items():
        if key not in known:
            names = ", ".join(known) or "none"
            raise LatkitError(f"unknown backend option {key!r} (this backend's options: {names})")
        default = known[key].default if known[key].default is not MISSING else None
        if isinstance(default, bool):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise LatkitError(f"backend option {key} must be true or false, got {text!r}")
            out[key] = text.lower() in ("true", "1", "yes")
        elif isinstance(default, int):
            try:
                out[key] = int(text)
            except ValueError:
                raise LatkitError(f"backend option {key} must be an integer, got {text!r}") from None
        else:
            out[key] = text
    return out


class Backend(ABC):
    """An inference runtime on a device. Construct through ``latkit.backends.registry.get_backend``."""

    name: ClassVar[str] = ""
    devices: ClassVar[tuple[str, ...]] = DEVICES
    reads: ClassVar[str] = "onnx"  # "onnx": any ONNX model; "network": latkit's torch networks only
    extra: ClassVar[str] = ""  # the pip extra that installs the runtime, e.g. "openvino"
    # False where preparing a model invalidates runners prepared before (torch.compile resets Dynamo's caches):
    # a campaign then prepares its reference architecture afresh for each reference timing
    persistent_runners: ClassVar[bool] = True
    Options: ClassVar[type] = NoOptions

    def __init__(self, device: str = "cpu", threads: int = 1, **options: Any):
        if device not in self.devices:
            raise LatkitError(f"backend {self.name!r} runs on {', '.join(self.devices)}, not {device!r}")
        self.device = device
        self.threads = threads
        try:
            self.opts = self.Options(**options)
        except TypeError:
            names = ", ".join(f.name for f in fields(self.Options)) or "none"
            raise LatkitError(f"unknown option for backend {self.name!r} among {sorted(options)} "
                              f"(its options: {names})") from None
        self._check_options()

    def _check_options(self) -> None:
        """Refuse option values the backend cannot honour (a LatkitError)."""

    def availability(self) -> tuple[bool, str]:
        """(True, '') when usable here, else (False, every reason in one line)."""
        ok, reason = self._available_impl()
        reasons = [] if ok else [reason]
        if self.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                reasons.append("no CUDA GPU visible to torch")
        return not reasons, "; ".join(reasons)

    def check_available(self) -> None:
        ok, reason = self.availability()
        if not ok:
            raise BackendUnavailable(f"backend {self.name!r} on {self.device} is not available: {reason}")

    def prepare(self, source: ModelSource | Network, beside: Runner | None = None) -> Runner:
        """Build everything needed to run ``source`` (a network in eval mode, or ONNX) once; time it many times.

        ``beside``: a runner this one will alternate with in a duet (the reference). The new runner enqueues on its
        CUDA stream, and preparing it must leave ``beside`` usable (torch.compile then keeps Dynamo's caches)."""
        if isinstance(source, Network):
            source = ModelSource.of(source)
        if self.reads == "network" and source.network is None:
            raise LatkitError(f"backend {self.name!r} times latkit networks, not ONNX files; time {source.name} with an "
                              "ONNX backend (onnxruntime, openvino, tensorrt)")
        return self._prepare_impl(source, beside)

    def prebuild(self, source: ModelSource) -> ModelSource:
        """The work a builder does ahead of a measuring slot, on another core (``latkit measure --ray --builders``):
        here the ONNX bytes, for backends that read ONNX (the network then stays with the builder). A backend whose
        slow preparation a per-machine cache keeps overrides this to fill the cache."""
        if self.reads == "onnx":
            return ModelSource(source.input_shape, onnx_bytes=source.onnx(), name=source.name)
        return source

    def options(self) -> dict[str, Any]:
        """Settings that change the latency beyond the protocol (e.g. TensorRT precision); part of a dataset's
        identity, so rows measured with other options never share a file."""
        return asdict(self.opts)

    @abstractmethod
    def _available_impl(self) -> tuple[bool, str]: ...

    @abstractmethod
    def versions(self) -> dict[str, str]:
        """Library versions that decide the latency (runtime, and what it runs on)."""

    @abstractmethod
    def _prepare_impl(self, source: ModelSource, beside: Runner | None) -> Runner:
        """A runner for ``source``; on CUDA it enqueues on ``beside.stream`` when ``beside`` is given."""

    def device_name(self) -> str:
        from latkit.env import device_name

        return device_name(self.device)
