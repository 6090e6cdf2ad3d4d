"""Search, train and sweep end to end: what ``latkit search``, ``latkit train`` and ``latkit sweep`` run."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from latkit.backends.base import MeasureProtocol
from latkit.backends.registry import backend_class, get_backend, list_backends
from latkit.errors import LatkitError
from latkit.measure import time_genotype
from latkit.network import NetConfig, build, count_params
from latkit.space import PUBLISHED, Genotype, encode_many, parse

Log = Callable[[str], None]


def deployment_config(predictor: Any) -> NetConfig:
    """The network shape the predictor was fitted on (the one the found genotype is deployed and measured at)."""
    c = (getattr(predictor, "meta", None) or {}).get("config") or {}
    keys = ("layers", "channels", "resolution", "in_channels", "classes", "batch")
    return NetConfig(**{k: int(c[k]) for k in keys if k in c})


def measure_ms(backend_name: str, device: str, genotype: Genotype, config: NetConfig) -> dict[str, float]:
    """Latency of a genotype on a backend through latkit's own measurement path (default protocol)."""
    backend = get_backend(backend_name, device)
    backend.check_available()
    row = time_genotype(backend, genotype, config, MeasureProtocol())
    if row["status"] != "ok":
        raise LatkitError(f"measuring on {backend_name}/{device} failed: {row['error']}")
    return {"min_ms": row["min_ms"], "median_ms": row["median_ms"]}


def finish_search(result: dict[str, Any], target: str, device: str, predictor: Any, measure: bool,
                  out: Path) -> dict[str, Any]:
    """Add measured latency (found genotype and DARTS_V2 as reference) and parameters; write result.json."""
    genotype = parse(result["genotype"])
    config = deployment_config(predictor)
    result.update(target=target, device=device, deployment_config=config.to_dict(),
                  params=count_params(build(genotype, config)))
    if measure:
        result["measured"] = measure_ms(target, device, genotype, config)
        result["reference"] = {"name": "DARTS_V2", "measured": measure_ms(target, device, PUBLISHED["DARTS_V2"], config),
                               "predicted_ms": float(predictor.predict_ms(encode_many([PUBLISHED["DARTS_V2"]]))[0])}
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def genotype_from(spec: str) -> Genotype:
    """A genotype string, JSON, published name, or a search's result.json."""
    path = Path(spec)
    if spec.endswith(".json") and path.is_file():
        try:
            return parse(json.loads(path.read_text())["genotype"])
        except (json.JSONDecodeError, KeyError, TypeError):
            raise LatkitError(f"{spec} is not a latkit search result (no 'genotype')") from None
    return parse(spec)


def available_cpu_backends() -> list[tuple[str, str]]:
    """(backend, device) pairs usable here, for the cross-backend matrix."""
    pairs = []
    for name in list_backends():
        for device in backend_class(name).devices:
            if get_backend(name, device).availability()[0]:
                pairs.append((name, device))
    return pairs


def pareto_plot(rows: list[dict[str, Any]], path: Path, target: str) -> Path:
    """Accuracy against measured latency, one point per lambda (and the references)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        marker = "s" if r["name"].startswith(("DARTS", "lambda=0 ")) or r["name"] == "lambda=0" else "o"
        ax.scatter(r["measured_ms"], 100 * r["test_accuracy"], marker=marker)
        ax.annotate(r["name"], (r["measured_ms"], 100 * r["test_accuracy"]), fontsize=8, xytext=(4, 2),
                    textcoords="offset points")
    ax.set(xlabel=f"measured latency on {target} (min ms)", ylabel="test accuracy (%)",
           title="latency-aware DARTS: accuracy vs latency")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
