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
    """Vendor, family, model, stepping, microcode and the nominal (maximum) clock where the kernel reports one: two
    hosts with the same model name (a VM's 'AMD EPYC') can differ in all of these, and in latency. The live clock
    (``cpu MHz``) is left out: it changes from one reading to the next, and a fingerprint compared on resume must
    not."""
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
    ident = (f"{fields.get('vendor_id', '?')} family {fields.get('cpu family', '?')} model {fields.get('model', '?')} "
             f"stepping {fields.get('stepping', '?')} microcode {fields.get('microcode', '?')}")
    try:
        with open("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", encoding="utf-8") as f:
            return f"{ident}, max {round(int(f.read()) / 1000)} MHz"  # kHz
    except (OSError, ValueError):
        return ident


def gpu_info() -> dict[str, str]:
    """The current CUDA device's model, driver, nominal clocks and power limit (read-only: never changes the card's
    settings). Live clocks are left out: an idle card reads a few hundred MHz, and a fingerprint compared on resume
    and by Ray's admission must not change between readings. nvidia-smi is asked about this device by its UUID, so
    CUDA_VISIBLE_DEVICES is respected."""
    import torch

    if not torch.cuda.is_available():
        return {}
    index = torch.cuda.current_device()
    info = {"gpu": torch.cuda.get_device_name(index),
            "cuda_capability": ".".join(map(str, torch.cuda.get_device_capability(index)))}
    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    which = [f"--id=GPU-{uuid}"] if uuid is not None else []
    query = "driver_version,clocks.max.sm,clocks.max.mem,power.limit,persistence_mode"
    try:
        out = subprocess.run(["nvidia-smi", *which, f"--query-gpu={query}", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout.splitlines()[0]
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
