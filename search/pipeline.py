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


def check_target(target: str, device: str) -> None:
    """Fail now, not after an hour of searching, when the target backend cannot measure here."""
    get_backend(target, device).check_available()


def _write_result(out: Path, result: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")


def finish_search(result: dict[str, Any], target: str, device: str, predictor: Any, measure: bool,
                  out: Path) -> dict[str, Any]:
    """Add parameters and write result.json; then measure (found genotype and DARTS_V2 as reference) and
    write it again, so a failed or interrupted measurement never loses the search's result."""
    genotype = parse(result["genotype"])
    config = deployment_config(predictor)
    result.update(target=target, target_device=device, deployment_config=config.to_dict(),
                  params=count_params(build(genotype, config)))
    _write_result(out, result)
    if measure:
        result["measured"] = measure_ms(target, device, genotype, config)
        result["reference"] = {"name": "DARTS_V2", "measured": measure_ms(target, device, PUBLISHED["DARTS_V2"], config),
                               "predicted_ms": float(predictor.predict_ms(encode_many([PUBLISHED["DARTS_V2"]]))[0])}
        _write_result(out, result)
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


def available_backends() -> list[tuple[str, str]]:
    """(backend, device) pairs usable here, for the cross-backend matrix."""
    pairs = []
    for name in list_backends():
        for device in backend_class(name).devices:
            if get_backend(name, device).availability()[0]:
                pairs.append((name, device))
    return pairs


def _shape(config: NetConfig | dict[str, Any]) -> str:
    c = config.to_dict() if isinstance(config, NetConfig) else config
    return (f"{c['layers']} cells x {c['channels']} channels, batch {c['batch']}, "
            f"{c['in_channels']}x{c['resolution']}x{c['resolution']}")


def parse_backends(text: str | None) -> list[tuple[str, str]] | None:
    """``torch,onnxruntime/cpu`` as (backend, device) pairs (device cpu unless given); None for None."""
    if text is None:
        return None
    pairs = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, _, device = item.partition("/")
        get_backend(name, device or "cpu").check_available()
        pairs.append((name, device or "cpu"))
    return pairs


Job = Callable[[Log], Any]  # a unit of a sweep's work, given where to log
Runner = Callable[[list[Job]], list[Any]]  # runs jobs (perhaps side by side), returns their results in order


def run_sweep(out: str | Path, *, target: str, target_device: str, predictor: Any, lambdas: list[float],
              form: str, search: dict[str, Any], train: dict[str, Any], log: Log,
              backends: list[tuple[str, str]] | None = None, parallel: Runner | None = None,
              one_at_a_time: Runner | None = None) -> dict[str, Any]:
    """A search per lambda, each genotype (and DARTS_V2) trained and measured on ``backends`` (default: every
    backend available here; the target is always among them).

    ``search`` holds ``run_search``'s keyword arguments (data, epochs, sizes, device, ...), ``train`` those of
    ``train_genotype`` (epochs, layers, channels, batch_size, device). Accuracy is that of the network trained
    here (``train``'s shape); latency is that of the deployment network the predictor was fitted on: the two
    are written side by side in the table and the JSON, each with its shape. ``parallel`` runs the searches and
    the trainings (on Ray: one task each, ``latkit.cluster.ray_runners``), ``one_at_a_time`` the measurements
    (never two at once); both default to running here, in order. Returns the sweep document.
    """
    from latkit.search.searcher import run_search
    from latkit.search.train import train_genotype

    check_target(target, target_device)
    parallel = parallel or (lambda jobs: [job(log) for job in jobs])
    one_at_a_time = one_at_a_time or (lambda jobs: [job(log) for job in jobs])
    out = Path(out)
    config = deployment_config(predictor)

    def search_job(lam: float) -> Job:
        def job(job_log: Log) -> dict[str, Any]:
            sub = out / f"lambda_{lam:g}"
            job_log(f"== search, lambda {lam:g} -> {sub}")
            result = run_search(sub, predictor=predictor, lam=lam, form=form, log=job_log, **search)
            result.update(lam=lam, form=form, predictor=predictor.kind)
            return finish_search(result, target, target_device, predictor, False, sub)
        return job

    def train_job(name: str, genotype: Genotype) -> Job:
        def job(job_log: Log) -> dict[str, Any]:
            job_log(f"== train {name} for {train['epochs']} epochs")
            return train_genotype(genotype, data=search["data"], data_dir=search.get("data_dir"),
                                  resolution=search.get("resolution"), limit=search.get("limit"),
                                  seed=search.get("seed", 0), out=out / f"train_{name.replace('=', '_')}",
                                  log=job_log, **train)
        return job

    def measure_job(backend: str, device: str, genotype: Genotype) -> Job:
        return lambda job_log: measure_ms(backend, device, genotype, config)["min_ms"]

    results = parallel([search_job(lam) for lam in lambdas])
    for lam, result in zip(lambdas, results):
        _write_result(out / f"lambda_{lam:g}", result)  # here too: the search may have run on another machine
    candidates: list[tuple[str, Genotype]] = [("DARTS_V2", PUBLISHED["DARTS_V2"])]
    candidates += [(f"lambda={lam:g}", parse(r["genotype"])) for lam, r in zip(lambdas, results)]
    trained_all = parallel([train_job(name, genotype) for name, genotype in candidates])
    backends = list(dict.fromkeys([(target, target_device)] + (backends or available_backends())))
    log(f"== measure {len(candidates)} genotypes on {len(backends)} backends, one at a time")
    ms = iter(one_at_a_time([measure_job(b, d, g) for _, g in candidates for b, d in backends]))
    rows = []
    for (name, genotype), trained in zip(candidates, trained_all):
        latencies = {f"{b}/{d}": next(ms) for b, d in backends}
        rows.append({"name": name, "genotype": str(genotype), "test_accuracy": trained["test_accuracy"],
                     "predicted_ms": float(predictor.predict_ms(encode_many([genotype]))[0]),
                     "measured_ms": latencies[f"{target}/{target_device}"], "latency_ms": latencies})
        log(f"{name}: accuracy {100 * trained['test_accuracy']:.2f}%, {target} {rows[-1]['measured_ms']:.3f} ms")
    trained_config = dict(trained_all[-1]["config"], data=search["data"], epochs=train["epochs"])
    doc = {"target": f"{target}/{target_device}", "form": form, "trained_config": trained_config,
           "deployment_config": config.to_dict(), "rows": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.md").write_text(sweep_table(doc))
    (out / "sweep.json").write_text(json.dumps(doc, indent=2) + "\n")
    pareto_plot(rows, out / "pareto.png", target)
    return doc


def sweep_table(doc: dict[str, Any]) -> str:
    """The sweep as Markdown: which network the accuracy and the latencies belong to, then one row per genotype."""
    t = doc["trained_config"]
    cols = list(doc["rows"][0]["latency_ms"]) if doc["rows"] else []
    text = (f"Accuracy: the network trained here ({_shape(t)}; {t['data']}, {t['epochs']} epochs). "
            f"Latency: the deployment network ({_shape(doc['deployment_config'])}), min ms of latkit's "
            f"measurement protocol.\n\n"
            "| architecture | test acc % (trained net) | predicted ms | "
            + " | ".join(f"{c} ms (deployed net)" for c in cols) + " |\n" + "|---" * (3 + len(cols)) + "|\n")
    for r in doc["rows"]:
        text += (f"| {r['name']} | {100 * r['test_accuracy']:.2f} | {r['predicted_ms']:.3f} | "
                 + " | ".join(f"{r['latency_ms'][c]:.3f}" for c in cols) + " |\n")
    return text


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
