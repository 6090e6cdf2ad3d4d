"""The kind registry and the recommendation table every default reads."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from latkit.cli import main
from latkit.predictors import load_predictor
from latkit.predictors.base import KINDS, PredictorError, differentiable_kinds, list_predictors, make_predictor, register
from latkit.predictors.recommend import build_table, choose, load_table, recommended_kind

ROOT = Path(__file__).resolve().parents[1]


def test_the_table_regenerates_identically_from_the_shipped_data() -> None:
    shipped = load_table()
    again = json.loads(json.dumps(build_table()))  # the JSON round trip the written file went through
    assert [r["dataset"] for r in again["rows"]] == [r["dataset"] for r in shipped["rows"]]
    for new, old in zip(again["rows"], shipped["rows"]):
        assert (new["best"], new["best_differentiable"]) == (old["best"], old["best_differentiable"])
        for kind, scores in old["scores"].items():
            assert new["scores"][kind] == pytest.approx(scores, rel=1e-6), (new["dataset"], kind)
        assert {k: v for k, v in new.items() if k != "scores"} == {k: v for k, v in old.items() if k != "scores"}


def test_every_embedded_target_has_a_row_and_its_recommended_predictors_load() -> None:
    for row in load_table()["rows"]:
        assert row["best"] in list_predictors() and row["best_differentiable"] in differentiable_kinds()
        assert row["scores"][row["best"]]["mape_pct"] == min(s["mape_pct"] for s in row["scores"].values())
        target = f"{row['backend']}/{row['device']}"
        assert load_predictor(target).kind == row["best"]
        assert load_predictor(target, differentiable=True).kind == row["best_differentiable"]


def test_recommended_kind_reads_the_row_and_falls_back_to_the_kind_that_wins_most() -> None:
    def row(backend: str, **mape: float) -> dict:
        scores = {k: {"mape_pct": v} for k, v in mape.items()}
        return {"backend": backend, "device": "cpu", "config": {}, "scores": scores, **choose(scores)}

    table = {"rows": [row("a", mlp=2.0, xgboost=1.0, cse=3.0), row("b", mlp=1.0, xgboost=2.0, cse=3.0),
                      row("c", mlp=1.5, xgboost=1.0, cse=0.5)]}
    assert table["rows"][0]["best"] == "xgboost" and table["rows"][0]["best_differentiable"] == "mlp"
    assert recommended_kind("a", "cpu", table=table) == "xgboost"
    assert recommended_kind("a", "cpu", differentiable=True, table=table) == "mlp"  # the search's
    assert recommended_kind("c", "cpu", table=table) == "cse"
    # a target without a row: the kind that wins most rows (xgboost 1, mlp 1, cse 1: the lower mean rank)
    assert recommended_kind("new", "cpu", table=table) == "xgboost"
    assert recommended_kind("new", "cpu", differentiable=True, table=table) == "mlp"  # wins a and b


def test_registering_a_kind_twice_is_refused_and_the_registry_holds_what_the_rest_needs() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        register("mlp", min_rows=1, weights="w")(type("Again", (), {}))
    for kind in list_predictors():
        info = KINDS[kind]
        assert info.cls.kind == kind and info.min_rows > 0 and info.weights
        assert make_predictor(kind).kind == kind
    assert not KINDS["transfer"].from_scratch and "transfer" not in list_predictors()
    with pytest.raises(PredictorError, match="unknown predictor"):
        make_predictor("transfer")


def test_no_literal_predictor_kind_outside_the_registry() -> None:
    """Library code names a kind only where it registers it: every other choice reads the registry or the table.
    ("additive" is also a loss form, named by the search's penalty.)"""
    allowed = {(f, "additive") for f in ("search/penalty.py", "search/searcher.py", "search/pipeline.py", "latkit/cli.py")}
    found = []
    for folder in ("latkit", "search", "backends", "datasets"):
        for path in (ROOT / folder).rglob("*.py"):
            rel = str(path.relative_to(ROOT))
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "register":
                    continue  # the registration itself (its arguments are walked below, and skipped there)
                if isinstance(node, ast.Constant) and node.value in list_predictors() \
                        and (rel, node.value) not in allowed and not _registering(path, node):
                    found.append(f"{rel}:{node.lineno} {node.value!r}")
    assert not found, found


def _registering(path: Path, node: ast.Constant) -> bool:
    return f'@register("{node.value}"' in path.read_text().splitlines()[node.lineno - 1]


def test_cli_recommend_prints_the_table(capsys: pytest.CaptureFixture) -> None:
    assert main(["recommend"]) == 0
    out = capsys.readouterr().out
    for row in load_table()["rows"]:
        assert row["dataset"] in out and f"| {row['best']} |" in out
