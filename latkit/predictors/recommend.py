"""Which predictor kind to use where: a table written by ``latkit recommend --write`` from the shipped datasets and
read by every default (``--model auto``): the CLI, the Python API, the search, the sweep and the transfer priors.

For each shipped dataset that latkit embeds predictors for, every from-scratch kind is fitted on the training rows
of the fixed split that ``latkit bench predictors`` uses (seed 0, every undisturbed training row) and scored on the
held-out rows; the kind with the lowest held-out MAPE (undisturbed rows) is recommended, and the best
differentiable one for the search. The table carries each kind's error and the dataset's noise floor beside it.
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable

from latkit.predictors.base import KINDS, PredictorError, list_predictors

AUTO = "auto"  # the --model value that reads this table
TABLE_FILE = "recommended.json"
TABLE_VERSION = 1


def table_path() -> Path:
    """The shipped table (package data beside this module)."""
    return Path(str(resources.files("latkit") / "predictors" / TABLE_FILE))


def embedded_name(backend: str, device: str, config: dict[str, Any], kind: str) -> str:
    """The directory name of an embedded predictor: the dataset's name plus the kind."""
    from latkit.measure import default_dataset_name
    from latkit.network import NetConfig

    stem = Path(default_dataset_name(backend, device, NetConfig(**config))).stem
    return f"{stem}_{kind}"


def embedded_datasets() -> list[Path]:
    """The shipped datasets that latkit embeds predictors for (a ``pretrained/<dataset>_<kind>`` directory)."""
    from latkit.datasets import shipped

    pretrained = resources.files("latkit") / "predictors" / "pretrained"
    return [p for p in shipped() if any((pretrained / f"{p.stem}_{k}").is_dir() for k in list_predictors())]


def score_dataset(path: str | Path, kinds: Iterable[str] | None = None, stat: str | None = None) -> dict[str, Any]:
    """One table row: every kind fitted on ``path``'s training split and scored on its held-out rows."""
    from latkit.datasets.quality import noise_floor
    from latkit.datasets.store import load
    from latkit.predictors.fitting import DEFAULT_STAT, dataset_xy, held_out_scores, split
    from latkit.predictors.base import make_predictor

    stat = stat or DEFAULT_STAT
    ds = load(path)
    x, y, index, clean = dataset_xy(ds, stat)
    train, test = split(index, clean)
    floor = noise_floor(ds, stat, ds.header.get("protocol", {}).get("min_cpu_share"))
    scores = {}
    for kind in kinds or list_predictors():
        predictor = make_predictor(kind)
        predictor.fit(x[train], y[train], 0)
        s = held_out_scores(y[test], predictor.predict_ms(x[test]), clean[test])
        scores[kind] = {"mape_pct": s["undisturbed"]["mape_pct"], "mape_all_pct": s["mape_pct"],
                        "spearman": s["undisturbed"]["spearman"]}
    h = ds.header
    return {"dataset": Path(path).name, "backend": h["backend"], "device": h["device"], "config": h["config"],
            "unit": "normalised" if ds.duet else "raw", "stat": stat, "training_rows": int(train.sum()),
            "held_out_rows": int(test.sum()), "held_out_undisturbed_rows": int((test & clean).sum()),
            "noise_single_mape_pct": floor["single_mape_pct"], "noise_pairs": floor["pairs"], "scores": scores,
            **choose(scores)}


def choose(scores: dict[str, dict[str, float]]) -> dict[str, str]:
    """The kind with the lowest held-out MAPE, and the differentiable kind with the lowest (for the search)."""
    ranked = sorted(scores, key=lambda k: scores[k]["mape_pct"])
    differentiable = [k for k in ranked if KINDS[k].differentiable]
    return {"best": ranked[0], "best_differentiable": differentiable[0] if differentiable else None}


def build_table(datasets: Iterable[str | Path] | None = None,
                log: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """The whole table from ``datasets`` (default: the shipped ones with embedded predictors)."""
    rows = []
    for path in datasets if datasets is not None else embedded_datasets():
        row = score_dataset(path)
        rows.append(row)
        log(f"{row['dataset']}: " + ", ".join(f"{k} {v['mape_pct']:.2f}%" for k, v in row["scores"].items())
            + f" (noise {row['noise_single_mape_pct']:.2f}%): {row['best']}")
    return {"version": TABLE_VERSION, "command": "latkit recommend --write",
            "split": "sample index % 5 == 4 held out (latkit bench predictors' split); fit seed 0 on every "
                     "undisturbed training row; ranked by held-out MAPE on the undisturbed rows",
            "rows": rows}


def write_table(table: dict[str, Any], path: str | Path | None = None) -> Path:
    from latkit.atomic import write_bytes

    path = Path(path) if path is not None else table_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, (json.dumps(table, indent=1, sort_keys=True) + "\n").encode())
    return path


def load_table(path: str | Path | None = None) -> dict[str, Any]:
    path = Path(path) if path is not None else table_path()
    try:
        table = json.loads(path.read_text())
    except FileNotFoundError:
        raise PredictorError(f"{path} is missing: regenerate it with latkit recommend --write") from None
    if table.get("version") != TABLE_VERSION:
        raise PredictorError(f"{path} is of version {table.get('version')}, latkit reads {TABLE_VERSION}: "
                             "regenerate it with latkit recommend --write")
    return table


def recommended_kind(backend: str, device: str, config: dict[str, Any] | None = None, *,
                     differentiable: bool = False, table: dict[str, Any] | None = None) -> str:
    """The kind to use for ``backend`` on ``device`` (at ``config``, when given): the table's row for it, or,
    for a target the table has no row for, the kind that wins most rows (ties: the lower mean rank)."""
    table = table or load_table()
    key = "best_differentiable" if differentiable else "best"
    rows = [r for r in table["rows"] if (r["backend"], r["device"]) == (backend, device)
            and (config is None or r["config"] == config)]
    if rows and rows[0][key]:
        return rows[0][key]
    votes: dict[str, list[float]] = {}
    for r in table["rows"]:
        if r[key]:
            ranked = sorted(r["scores"], key=lambda k: r["scores"][k]["mape_pct"])
            for k in ranked:
                votes.setdefault(k, []).append(ranked.index(k))
    if not votes:
        raise PredictorError("the recommendation table has no rows: regenerate it with latkit recommend --write")
    wins = {k: sum(r[key] == k for r in table["rows"]) for k in votes}
    return min(votes, key=lambda k: (-wins[k], sum(votes[k]) / len(votes[k])))


def resolve(kind: str, backend: str, device: str, *, differentiable: bool = False) -> str:
    """``kind`` itself, or for ``auto`` the recommended kind of ``backend`` on ``device``."""
    return recommended_kind(backend, device, differentiable=differentiable) if kind == AUTO else kind


def markdown(table: dict[str, Any]) -> str:
    """The table as Markdown: one line per dataset, every kind's held-out MAPE, the noise floor, the choices."""
    kinds = [k for k in list_predictors() if any(k in r["scores"] for r in table["rows"])]
    out = ["| dataset | unit | " + " | ".join(f"{k} MAPE %" for k in kinds)
           + " | noise: one measurement, MAPE % (re-measured pairs; on CPU the undisturbed ones) | recommended | for the search |",
           "|---" * (len(kinds) + 5) + "|"]
    for r in table["rows"]:
        out.append(f"| {r['dataset']} | {r['unit']} | "
                   + " | ".join(f"{r['scores'][k]['mape_pct']:.2f}" if k in r["scores"] else "-" for k in kinds)
                   + f" | {r['noise_single_mape_pct']:.2f} ({r['noise_pairs']}) | {r['best']} | "
                   f"{r['best_differentiable'] or '-'} |")
    return "\n".join(out) + "\n"
