"""Environment fingerprint: what decides a latency besides the architecture."""
from __future__ import annotations

import os
import platform
import subprocess
from functools import lru_cache


@lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@lru_cache(maxsize=1)
def cpu_id() -> str:
    """Vendor, family, model, stepping, microcode and nominal clock: two hosts with the same model name (a VM's
    'AMD EPYC') can differ in all of these, and in latency."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor is enough
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        return platform.processor() or platform.machine()
    mhz = fields.get("cpu MHz", "")
    return (f"{fields.get('vendor_id', '?')} family {fields.get('cpu family', '?')} model {fields.get('model', '?')} "
            f"stepping {fields.get('stepping', '?')} microcode {fields.get('microcode', '?')}, "
            f"{round(float(mhz)) if mhz else '?'} MHz")


def gpu_info() -> dict[str, str]:
    """GPU model, driver and clocks as found (read-only: never changes the card's settings)."""
    import torch

    if not torch.cuda.is_available():
        return {}
    info = {"gpu": torch.cuda.get_device_name(0), "cuda_capability": ".".join(map(str, torch.cuda.get_device_capability(0)))}
    query = "driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.limit,persistence_mode"
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.splitlines()[0]
        info.update(zip(query.split(","), (v.strip() for v in out.split(","))))
    except (OSError, subprocess.SubprocessError, IndexError):
        info["driver_version"] = "unknown (nvidia-smi not available)"
    return info


def device_name(device: str) -> str:
    return gpu_info().get("gpu", "cuda") if device == "cuda" else cpu_model()


def fingerprint(device: str) -> dict[str, object]:
    """Machine facts recorded with every dataset."""
    import numpy
    import torch

    fp: dict[str, object] = {
        "cpu": cpu_model(),
        "cpu_id": cpu_id(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "torch": torch.__version__,
    }
    if device == "cuda":
        fp.update(gpu_info())
    return fp
