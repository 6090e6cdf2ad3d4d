"""Search, train and sweep end to end: what ``latkit search``, ``latkit train`` and ``latkit sweep`` run."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

from latkit.atomic import check_out
from latkit.backends.timing import MeasureProtocol
from latkit.backends.registry import backend_class, get_backend, list_backends, parse_backend_list
from latkit.errors import LatkitError
from latkit.measure import Reference, reference_source, time_genotype
from latkit.network import NetConfig, build, count_params
from latkit.search.searcher import cell_report
from latkit.space import PUBLISHED, Genotype, encode_many, parse

Log = Callable[[str], None]


def deployment_config(predictor: Any) -> NetConfig:
    """The network shape the predictor was fitted on (the one the found genotype is deployed and measured at)."""
    c = (getattr(predictor, "meta", None) or {}).get("config") or {}
    keys = ("layers", "channels", "resolution", "in_channels", "classes", "batch")
    return NetConfig(**{k: int(c[k]) for k in keys if k in c})


def measure_ms(backend_name: str, device: str, genotype: Genotype, config: NetConfig) -> dict[str, float]:
    """Latency of a genotype on a backend through latkit's own measurement path: the campaign protocol, beside
    DARTS_V2 (``ratio``: its min in DARTS_V2's units from the same window, which a slow host state does not move).
    ``min_ms``, ``median_ms`` and ``reference_min_ms`` are raw: this machine's, now."""
    backend = get_backend(backend_name, device)
    backend.check_available()
    reference = Reference(backend, reference_source(config))
    try:
        row = time_genotype(backend, genotype, config, MeasureProtocol(), reference=reference)
    finally:
        reference.close()
    if row["status"] != "ok":
        raise LatkitError(f"measuring on {backend_name}/{device} failed: {row['error']}")
    return {"min_ms": row["min_ms"], "median_ms": row["median_ms"], "ratio": row["ratio"],
            "reference_min_ms": row["ref_min_ms"]}


def check_target(target: str, device: str) -> None:
    """Fail now, not after an hour of searching, when the target backend cannot measure here."""
    get_backend(target, device).check_available()


def _write_result(out: Path, result: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")


def shared_config(targets: list[tuple[str, str]], predictors: list[Any]) -> NetConfig:
    """The deployment shape all the targets' predictors were fitted at; an error if they differ (checked before a
    search, not only after it)."""
    configs = [deployment_config(p) for p in predictors]
    if any(c != configs[0] for c in configs):
        raise LatkitError("the targets' predictors were fitted at different network shapes: "
                          + "; ".join(f"{b}/{d}: {_shape(c)}" for (b, d), c in zip(targets, configs)))
    return configs[0]


# What `latkit search` and `latkit.search` do unless told, said once (the CLI's defaults read these).
# lambda 2: with the collapse bound, the weight whose seeded sweep met 0.85 x DARTS_V2 on every seed (0.72-0.80,
# measured beside it on onnxruntime); 0.5 gave 0.85-0.95 (benchmarks/RESULTS.md, "A search that does not collapse")
DEFAULT_LAMBDA = 2.0
DEFAULT_EPOCHS = 6
DEFAULT_MAX_FREE = 2  # parameter-free ops kept in the derived normal cell (the collapse bound)
DEFAULT_OUT = "runs/search"


def search(target: str | list[tuple[str, str]], *, out: str | Path = DEFAULT_OUT, target_device: str = "cpu",
           predictor: Any = None, model: str = "auto", force_predictor: bool = False, lam: float = DEFAULT_LAMBDA,
           form: str = "additive", target_ms: float | None = None, combine: str = "sum", measure: bool = True,
           epochs: int = DEFAULT_EPOCHS, max_free: int | None = DEFAULT_MAX_FREE, log: Log | None = None,
           progress: Any = None, **options: Any) -> dict[str, Any]:
    """Latency-aware DARTS end to end, what ``latkit search`` runs: load each target's predictor, search, derive
    (at most ``max_free`` parameter-free ops in the normal cell), write ``out/result.json``, then measure the
    genotype and DARTS_V2 on each target (``measure``) and write it again. Returns the result.

    ``target``: ``"onnxruntime"``, ``"onnxruntime,torch/cpu"`` or (backend, device) pairs; ``predictor``: a
    predictor directory or object for a single target (default: each target's embedded ``model``, ``auto``: the
    recommended differentiable kind); ``options``: ``run_search``'s (data, layers, channels, seed, threads, ...).
    Every latency in the result names its unit (``unit``: the predictor's; ``measured.in_unit_ms``)."""
    from latkit.predictors import Predictor
    from latkit.predictors.fitting import predictor_for
    from latkit.search.searcher import run_search

    log = log or (lambda line: None)
    check_out(out, directory=True)  # before the search: its result is written there at the end
    targets = parse_backend_list(target, "--target", target_device) if isinstance(target, str) else list(target)
    if len(targets) > 1 and predictor is not None:
        raise LatkitError("a predictor is given for one target; several targets are penalised with their "
                          "embedded ones")
    predictors = [predictor if isinstance(predictor, Predictor)
                  else predictor_for(predictor or backend, backend, device, model, force_predictor, differentiable=True)
                  for backend, device in targets]
    shared_config(targets, predictors)  # one deployment shape, or an error now rather than after the search
    if measure:
        for backend, device in targets:
            check_target(backend, device)
    names = ", ".join(f"{b}/{d}" for b, d in targets)
    kinds = ", ".join(dict.fromkeys(p.kind for p in predictors))
    several = f", the {combine} of their latencies / DARTS_V2's" if len(targets) > 1 else ""
    log(f"searching on {options.get('device', 'cpu')} for {names} with the {kinds} predictor"
        f"{'s' if len(targets) > 1 else ''} ({predictors[0].unit} ms){several}, lambda {lam:g} ({form}), {epochs} "
        f"epochs on {options.get('data', 'digits')}, at most {max_free} parameter-free ops in the normal cell "
        f"-> {out}")
    out = Path(out)
    result = run_search(out, predictor=predictors if len(targets) > 1 else predictors[0], lam=lam, form=form,
                        target_ms=target_ms, combine=combine, epochs=epochs, max_free=max_free, log=log,
                        progress=progress, **options)
    result.update(lam=lam, form=form, predictor=predictors[0].kind, predictors=[p.kind for p in predictors],
                  unit=predictors[0].unit, search_device=options.get("device", "cpu"))
    if len(targets) > 1:
        result["combine"] = combine
    return finish_search(result, targets, predictors, measure, out)


def finish_search(result: dict[str, Any], targets: list[tuple[str, str]], predictors: list[Any], measure: bool,
                  out: Path) -> dict[str, Any]:
    """Add parameters and write result.json; then measure on each target (the found genotype, and DARTS_V2 as
    reference) and write it again, so a failed or interrupted measurement never loses the search's result.

    ``predictors[i]`` is the predictor of ``targets[i]``; all must be fitted at one network shape (the deployment
    shape). The first target's measurement is ``measured`` and ``reference``; with several, ``per_target`` holds
    each target's, by ``backend/device``."""
    genotype = parse(result["genotype"])
    config = shared_config(targets, predictors)
    (target, device) = targets[0]
    result.update(target=target, target_device=device, deployment_config=config.to_dict(),
                  params=count_params(build(genotype, config)))
    if len(targets) > 1:
        result["targets"] = [f"{b}/{d}" for b, d in targets]
    _write_result(out, result)
    if measure:
        per_target = {}
        for (backend, dev), predictor in zip(targets, predictors):
            mine, darts = (measure_ms(backend, dev, g, config) for g in (genotype, PUBLISHED["DARTS_V2"]))
            for m in (mine, darts):
                m["in_unit_ms"] = predictor.in_unit_ms(m["min_ms"], m["ratio"])
            per_target[f"{backend}/{dev}"] = {
                "unit": predictor.unit, "predicted_ms": float(predictor.predict_ms(encode_many([genotype]))[0]),
                "measured": mine,
                "reference": {"name": "DARTS_V2", "measured": darts,
                              "predicted_ms": float(predictor.predict_ms(encode_many([PUBLISHED["DARTS_V2"]]))[0])}}
        result.update(per_target[f"{target}/{device}"])
        if len(targets) > 1:
            result["per_target"] = per_target
        _write_result(out, result)
    return result


def genotype_from(spec: str) -> Genotype:
    """A genotype string, JSON, published name, or a search's result.json."""
    path = Path(spec)
    if spec.endswith(".json") and path.is_file():
        try:
            genotype = json.loads(path.read_text())["genotype"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            raise LatkitError(f"{spec} is not a latkit search result (no 'genotype')") from None
        if not isinstance(genotype, str):
            raise LatkitError(f"{spec}: 'genotype' must be a genotype string, got {type(genotype).__name__}")
        return parse(genotype)
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
    pairs = parse_backend_list(text, "--backends")
    for name, device in pairs:
        get_backend(name, device).check_available()
    return pairs


Job = Callable[[Log], Any]  # a unit of a sweep's work, given where to log
Runner = Callable[[list[Job]], list[Any]]  # runs jobs (perhaps side by side), returns their results in order


def run_sweep(out: str | Path, *, target: str, target_device: str, predictor: Any, lambdas: list[float],
              form: str, search_options: dict[str, Any], train: dict[str, Any], log: Log,
              backends: list[tuple[str, str]] | None = None, seeds: list[int] | None = None,
              parallel: Runner | None = None, one_at_a_time: Runner | None = None) -> dict[str, Any]:
    """A search per lambda and seed, each genotype (and DARTS_V2) trained with that seed and measured on
    ``backends`` (default: every backend available here; the target is always among them).

    ``search_options`` holds ``search``'s keyword arguments (data, epochs, sizes, device, ...), ``train`` those of
    ``train_genotype`` (epochs, layers, channels, batch_size, device). ``seeds`` (default: ``search``'s seed) seed
    the search and the training of its genotype; with several, the document's ``summary`` gives each lambda's mean
    and standard deviation over seeds. Accuracy is that of the network trained here (``train``'s shape); latency is
    that of the deployment network the predictor was fitted on: the two are written side by side in the table and
    the JSON, each with its shape. A genotype is measured once however many runs found it. ``parallel`` runs the
    searches and the trainings (on Ray: one task each, ``latkit.search.ray_jobs.ray_runners``), ``one_at_a_time`` the
    measurements (never two at once); both default to running here, in order. Returns the sweep document.
    """
    from latkit.search.penalty import check_lambda
    from latkit.search.train import train_genotype

    check_out(out, directory=True)

    check_target(target, target_device)
    for lam in lambdas:
        check_lambda(lam)
    if not lambdas:
        raise LatkitError("a sweep needs at least one lambda")
    if form == "relative" and search_options.get("target_ms") is None:
        raise LatkitError("a sweep of the relative form needs a target latency (--target-ms): the latency each "
                          "lambda's search aims at")
    if seeds is not None and (not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds)):
        raise LatkitError(f"a sweep's seeds must be distinct integers >= 0, got {seeds}")
    parallel = parallel or (lambda jobs: [job(log) for job in jobs])
    one_at_a_time = one_at_a_time or (lambda jobs: [job(log) for job in jobs])
    out = Path(out)
    config = deployment_config(predictor)
    seeds = list(dict.fromkeys(seeds or [search_options.get("seed", 0)]))
    suffix = (lambda seed: f"_seed{seed}") if len(seeds) > 1 else (lambda seed: "")

    def search_job(lam: float, seed: int) -> Job:
        def job(job_log: Log) -> dict[str, Any]:
            sub = out / f"lambda_{lam:g}{suffix(seed)}"
            job_log(f"== search, lambda {lam:g}, seed {seed} -> {sub}")
            return search([(target, target_device)], out=sub, predictor=predictor, lam=lam, form=form,
                          measure=False, log=job_log, **dict(search_options, seed=seed))
        return job

    def train_job(name: str, seed: int, genotype: Genotype) -> Job:
        def job(job_log: Log) -> dict[str, Any]:
            job_log(f"== train {name} (seed {seed}) for {train['epochs']} epochs")
            return train_genotype(genotype, data=search_options["data"], data_dir=search_options.get("data_dir"),
                                  resolution=search_options.get("resolution"), limit=search_options.get("limit"), seed=seed,
                                  out=out / f"train_{name.replace('=', '_')}{suffix(seed)}", log=job_log, **train)
        return job

    def measure_job(backend: str, device: str, genotype: str) -> Job:
        return lambda job_log: measure_ms(backend, device, parse(genotype), config)

    runs = [(lam, seed) for seed in seeds for lam in lambdas]
    results = parallel([search_job(lam, seed) for lam, seed in runs])
    for (lam, seed), result in zip(runs, results):
        _write_result(out / f"lambda_{lam:g}{suffix(seed)}", result)  # here too: it may have run on another machine
    candidates: list[tuple[str, int, Genotype]] = [("DARTS_V2", seed, PUBLISHED["DARTS_V2"]) for seed in seeds]
    candidates += [(f"lambda={lam:g}", seed, parse(r["genotype"])) for (lam, seed), r in zip(runs, results)]
    trained_all = parallel([train_job(name, seed, genotype) for name, seed, genotype in candidates])
    backends = list(dict.fromkeys([(target, target_device)] + (backends or available_backends())))
    distinct = list(dict.fromkeys(str(g) for _, _, g in candidates))
    log(f"== measure {len(distinct)} genotypes on {len(backends)} backends, one at a time")
    ms = iter(one_at_a_time([measure_job(b, d, g) for g in distinct for b, d in backends]))
    measured = {(g, f"{b}/{d}"): next(ms) for g in distinct for b, d in backends}
    rows = []
    for (name, seed, genotype), trained in zip(candidates, trained_all):
        latencies = {f"{b}/{d}": measured[str(genotype), f"{b}/{d}"]["min_ms"] for b, d in backends}
        ratios = {f"{b}/{d}": measured[str(genotype), f"{b}/{d}"]["ratio"] for b, d in backends}
        on_target = measured[str(genotype), f"{target}/{target_device}"]
        rows.append({"name": name, "seed": seed, "genotype": str(genotype), "test_accuracy": trained["test_accuracy"],
                     "unit": predictor.unit, "predicted_ms": float(predictor.predict_ms(encode_many([genotype]))[0]),
                     "measured_in_unit_ms": predictor.in_unit_ms(on_target["min_ms"], on_target["ratio"]),
                     "measured_ms": on_target["min_ms"], "latency_ms": latencies, "latency_ratio": ratios})
        log(f"{name} (seed {seed}): accuracy {100 * trained['test_accuracy']:.2f}%, {target}: predicted "
            f"{rows[-1]['predicted_ms']:.3f} ms {predictor.unit}, measured {_ms(rows[-1]['measured_in_unit_ms'])} "
            f"{predictor.unit} (raw {on_target['min_ms']:.3f} ms)")
    trained_config = dict(trained_all[-1]["config"], data=search_options["data"], epochs=train["epochs"])
    doc = {"target": f"{target}/{target_device}", "predictor": predictor.kind, "unit": predictor.unit, "form": form,
           "target_ms": search_options.get("target_ms"), "seeds": seeds,
           "trained_config": trained_config,
           "deployment_config": config.to_dict(), "rows": rows, "summary": summarise(rows)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.md").write_text(sweep_table(doc))
    (out / "sweep.json").write_text(json.dumps(doc, indent=2) + "\n")
    pareto_plot(pareto_points(doc), out / "pareto.png", doc["target"])
    return doc


def mean_std(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for one value)."""
    import statistics

    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per architecture name (DARTS_V2, each lambda): the number of seeds, and the mean and sample standard
    deviation over seeds of the test accuracy and of each backend's measured latency (std 0 for one seed)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["name"], []).append(r)
    return [{"name": name, "n": len(g), "test_accuracy": mean_std([r["test_accuracy"] for r in g]),
             "measured_ms": mean_std([r["measured_ms"] for r in g]),
             "latency_ms": {c: mean_std([r["latency_ms"][c] for r in g]) for c in g[0]["latency_ms"]},
             "latency_ratio": {c: mean_std([r["latency_ratio"][c] for r in g]) for c in _ratio_columns(g)}}
            for name, g in groups.items()]


def _ratio_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The backends on which every row was timed beside DARTS_V2 (a ratio; None where a backend times alone)."""
    cols = list(rows[0].get("latency_ratio") or {}) if rows else []
    return [c for c in cols if all((r.get("latency_ratio") or {}).get(c) is not None for r in rows)]


def verdict(doc: dict[str, Any]) -> list[str]:
    """Each lambda > 0 against plain DARTS (lambda = 0) on the target: the change of mean measured latency (of the
    ratio to DARTS_V2 timed beside each, where every run has one; else of the raw minimum), the change of mean
    accuracy, and whether that accuracy is within one standard deviation over seeds of lambda = 0: the spread
    pooled over both, weighted by their degrees of freedom (a test set of a few hundred images gives a few
    accuracies, so three seeds of one lambda can tie, and its std of 0 alone is no yardstick)."""
    by_name = {s["name"]: s for s in doc.get("summary", [])}
    base = by_name.get("lambda=0")
    if base is None or base["n"] < 2:
        return []
    # the host-independent measure where every architecture has one: the ratio to DARTS_V2 timed beside it
    ratio = all(doc["target"] in s.get("latency_ratio", {}) for s in doc["summary"])
    lines = []
    for s in doc["summary"]:
        if not s["name"].startswith("lambda=") or s is base:
            continue
        key = "latency_ratio" if ratio else "latency_ms"
        cut = s[key][doc["target"]]["mean"] / base[key][doc["target"]]["mean"] - 1
        gap = s["test_accuracy"]["mean"] - base["test_accuracy"]["mean"]
        # pooled by degrees of freedom (base has at least 2 runs); a single run adds no spread
        std = math.sqrt(((base["n"] - 1) * base["test_accuracy"]["std"] ** 2
                         + (s["n"] - 1) * s["test_accuracy"]["std"] ** 2) / (base["n"] + s["n"] - 2))
        where = "within one std of lambda=0 or above" if gap >= -std else "more than one std below lambda=0"
        unit = " (in DARTS_V2's units: each timed beside it)" if ratio else ""
        lines.append(f"{s['name']}: latency {100 * cut:+.1f}% on {doc['target']}{unit}, accuracy "
                     f"{100 * gap:+.2f} points ({where}; std pooled over both {100 * std:.2f})")
    return lines


def sweep_table(doc: dict[str, Any]) -> str:
    """The sweep as Markdown: which network the accuracy and the latencies belong to, one row per run, and with
    several seeds the mean and standard deviation per architecture and each lambda against lambda = 0."""
    t = doc["trained_config"]
    cols = list(doc["rows"][0]["latency_ms"]) if doc["rows"] else []
    ratios = _ratio_columns(doc["rows"])
    several = len(doc.get("seeds", [])) > 1
    unit = doc["rows"][0].get("unit", "normalised") if doc["rows"] else "normalised"
    text = (f"Accuracy: the network trained here ({_shape(t)}; {t['data']}, {t['epochs']} epochs). "
            f"Latency: the deployment network ({_shape(doc['deployment_config'])}), min ms of latkit's "
            f"measurement protocol" + (", and its ratio to DARTS_V2 timed beside it in the same window (x DARTS_V2: "
                                       "a slow host state cancels)" if ratios else "") + f". Predicted and measured "
            f"on the target in the predictor's unit ({unit}" + (": the ratio times the predictor's baseline"
                                                                if unit == "normalised" else "") +
            "); raw: this machine's milliseconds when it measured."
            + (f" Searched with the {doc['predictor']} predictor." if doc.get("predictor") else "") + "\n\n"
            f"| architecture |{' seed |' if several else ''} test acc % (trained net) | predicted ms ({unit}) | "
            f"measured ms ({unit}) | " + " | ".join(f"{c} ms raw (deployed net)" for c in cols) + "".join(f" | {c} x DARTS_V2" for c in ratios)
            + " | parameter-free ops: normal (skip) / reduce |\n"
            + "|---" * (5 + several + len(cols) + len(ratios)) + "|\n")
    for r in doc["rows"]:
        seed = f" {r['seed']} |" if several else ""
        cells = cell_report(parse(r["genotype"]))
        text += (f"| {r['name']} |{seed} {100 * r['test_accuracy']:.2f} | {r['predicted_ms']:.3f} | "
                 f"{_ms(r.get('measured_in_unit_ms'))} | "
                 + " | ".join(f"{r['latency_ms'][c]:.3f}" for c in cols)
                 + "".join(f" | {r['latency_ratio'][c]:.3f}" for c in ratios)
                 + f" | {cells['normal']['parameter_free']} ({cells['normal']['skip_connect']}) / "
                   f"{cells['reduce']['parameter_free']} |\n")
    if not several:
        return text
    text += (f"\nMean +- standard deviation over seeds {', '.join(map(str, doc['seeds']))}:\n\n"
             "| architecture | runs | test acc % | " + " | ".join(f"{c} ms" for c in cols)
             + "".join(f" | {c} x DARTS_V2" for c in ratios) + " |\n" + "|---" * (3 + len(cols) + len(ratios)) + "|\n")
    for s in doc["summary"]:
        acc = s["test_accuracy"]
        text += (f"| {s['name']} | {s['n']} | {100 * acc['mean']:.2f} +- {100 * acc['std']:.2f} | "
                 + " | ".join(f"{s['latency_ms'][c]['mean']:.3f} +- {s['latency_ms'][c]['std']:.3f}" for c in cols)
                 + "".join(f" | {s['latency_ratio'][c]['mean']:.3f} +- {s['latency_ratio'][c]['std']:.3f}"
                           for c in ratios) + " |\n")
    lines = verdict(doc)
    return text + ("\n" + "".join(f"- {line}\n" for line in lines) if lines else "")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def pareto_points(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The sweep's points for ``pareto_plot``: each run, or with several seeds each architecture's mean and std."""
    if len(doc.get("seeds", [])) <= 1:
        return doc["rows"]
    return [{"name": s["name"], "test_accuracy": s["test_accuracy"]["mean"],
             "test_accuracy_std": s["test_accuracy"]["std"], "measured_ms": s["measured_ms"]["mean"],
             "measured_ms_std": s["measured_ms"]["std"]} for s in doc["summary"]]


def pareto_plot(points: list[dict[str, Any]], path: Path, target: str) -> Path:
    """Accuracy against measured latency, one point per lambda (and the references); error bars where a point
    carries ``test_accuracy_std`` and ``measured_ms_std`` (one standard deviation over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in points:
        x, y = r["measured_ms"], 100 * r["test_accuracy"]
        marker = "s" if r["name"] in ("DARTS_V2", "lambda=0") else "o"
        if "measured_ms_std" in r:
            ax.errorbar(x, y, xerr=r["measured_ms_std"], yerr=100 * r["test_accuracy_std"], fmt=marker, capsize=3)
        else:
            ax.scatter(x, y, marker=marker)
        ax.annotate(r["name"], (x, y), fontsize=8, xytext=(4, 2), textcoords="offset points")
    bars = any("measured_ms_std" in r for r in points)
    ax.set(xlabel=f"measured latency on {target} (min ms{', mean +- std' if bars else ''})",
           ylabel=f"test accuracy (%{', mean +- std' if bars else ''})",
           title="latency-aware DARTS: accuracy vs latency")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
