"""On a lent GPU machine: may this machine resume a shipped dataset? Prints the file a campaign should write.

Usage: python -m benchmarks.gpu_resume SHIPPED OUT

`latkit measure` resumes a file only when its header (backend, options, network, protocol, seed and the machine's
environment: GPU, driver, CUDA, torch, ...) is the one this machine would write. If SHIPPED passes that check, it is
copied to OUT and OUT is printed; otherwise OUT with the GPU's name added (a new file that cannot be mistaken for
the shipped one) is printed, with the keys that differ on stderr.
"""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from latkit.backends.registry import get_backend
from latkit.backends.timing import MeasureProtocol
from latkit.datasets.store import header_diff, load, upgrade
from latkit.measure import campaign_header
from latkit.network import NetConfig


def resume_diff(shipped: Path) -> list[str]:
    """The header keys in which ``shipped`` differs from what a default campaign with its identity writes here."""
    old = load(shipped).header
    options = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in old.get("backend_options", {}).items()}
    backend = get_backend(old["backend"], old["device"], options=options)
    here = campaign_header(backend, NetConfig(**old["config"]), MeasureProtocol(), old["seed"])
    return header_diff(upgrade(old), upgrade(here))


def main() -> None:
    shipped, out = Path(sys.argv[1]), Path(sys.argv[2])
    if out.exists() or not shipped.exists():
        print(out)
        return
    try:
        diff = resume_diff(shipped)
    except Exception as exc:  # no GPU, no backend: a new file, and say why
        diff = [f"({type(exc).__name__}: {exc})"]
    if not diff:
        shutil.copyfile(shipped, out)
        print(f"resuming {shipped.name}", file=sys.stderr)
        print(out)
        return
    import torch

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "nogpu"
    print(f"{shipped.name} cannot be resumed here ({', '.join(diff)}): a new file", file=sys.stderr)
    print(out.with_name(f"{out.stem}_{re.sub(r'[^a-z0-9]+', '_', gpu.lower()).strip('_')}{out.suffix}"))


if __name__ == "__main__":
    main()
