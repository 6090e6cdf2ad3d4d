"""latkit: measure, predict and search for latency on real inference backends (latency-aware DARTS)."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("latkit")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"
