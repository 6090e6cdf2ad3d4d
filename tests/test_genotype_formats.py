"""Genotypes as other projects print them, 'none' edges (SNAS), and the cells outside the space.

Every genotype text here is copied from the project that published it (repository and path in the comment), so the
tests pin latkit's reading of real input, not of a guess at it.
"""
from __future__ import annotations

import ast
import json
import re

import numpy as np
import pytest
import torch

from latkit.network import NetConfig, build, count_macs, count_params
from latkit.space import (EDGES_PER_CELL, PRIMITIVES, PUBLISHED, Genotype, GenotypeError, edge_index, encode, parse,
                          sample)

# SNAS-Series/SNAS-Series, SNAS/genotypes.py: SNAS_aggressive (the authors' layout, one edge a line, joined here).
SNAS_AGGRESSIVE = (
    "Genotype(normal=[('sep_conv_5x5', 0), ('skip_connect', 1), ('skip_connect', 0), ('skip_connect', 1), "
    "('dil_conv_5x5', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_5x5', 1)], "
    "normal_concat=range(2, 6), reduce=[('sep_conv_5x5', 0), ('none', 1), ('sep_conv_5x5', 0), ('none', 1), "
    "('none', 1), ('none', 0), ('none', 1), ('none', 0)], reduce_concat=range(2, 6))"
)

# SNAS-Series/SNAS-Series, SNAS/genotypes.py: SNAS_aggressive_edge_all, the 14-edge (supernet) list that the
# authors' train_edge_all.py evaluates; the same cells as SNAS_aggressive with every unused edge 'none'.
SNAS_AGGRESSIVE_EDGE_ALL = (
    "Genotype(normal=[('sep_conv_5x5', 0), ('skip_connect', 1), ('skip_connect', 0), ('skip_connect', 1), "
    "('none', 2), ('dil_conv_5x5', 1), ('skip_connect', 0), ('none', 2), ('none', 3), ('skip_connect', 0), "
    "('dil_conv_5x5', 1), ('none', 2), ('none', 3), ('none', 4)], normal_concat=range(2, 6), "
    "reduce=[('sep_conv_5x5', 0), ('none', 1), ('sep_conv_5x5', 0), ('none', 1), ('none', 2), ('none', 0), "
    "('none', 1), ('none', 2), ('none', 3), ('none', 0), ('none', 1), ('none', 2), ('none', 3), ('none', 4)], "
    "reduce_concat=range(2, 6))"
)

# tanglang96/MDENAS, run_darts_cifar.sh: MdeNAS's cell, one list per node (pt.darts' form).
MDENAS_NESTED = (
    "Genotype(normal=[[('sep_conv_5x5', 1), ('sep_conv_3x3', 0)], [('skip_connect', 0), ('sep_conv_5x5', 1)], "
    "[('sep_conv_5x5', 3), ('sep_conv_3x3', 1)], [('dil_conv_5x5', 3), ('max_pool_3x3', 4)]], "
    "normal_concat=range(2, 6), reduce=[[('max_pool_3x3', 0), ('sep_conv_5x5', 1)], [('skip_connect', 0), "
    "('skip_connect', 1)], [('sep_conv_3x3', 3), ('skip_connect', 2)], [('dil_conv_3x3', 3), ('sep_conv_5x5', 0)]], "
    "reduce_concat=range(2, 6))"
)
# xiaomi-automl/FairDARTS, fairdarts/genotypes.py: MdeNAS, the same cell flattened to the plain form.
MDENAS_PLAIN = (
    "Genotype(normal=[('sep_conv_5x5', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_5x5', 1), "
    "('sep_conv_5x5', 3), ('sep_conv_3x3', 1), ('dil_conv_5x5', 3), ('max_pool_3x3', 4)], normal_concat=range(2, 6), "
    "reduce=[('max_pool_3x3', 0), ('sep_conv_5x5', 1), ('skip_connect', 0), ('skip_connect', 1), "
    "('sep_conv_3x3', 3), ('skip_connect', 2), ('dil_conv_3x3', 3), ('sep_conv_5x5', 0)], reduce_concat=range(2, 6))"
)

# D-X-Y/AutoDL-Projects, others/GDAS/lib/nas/genotypes.py: GDAS_V1, (op, input, weight) triples.
GDAS_WEIGHTED = (
    "Genotype(normal=[('skip_connect', 0, 0.13017432391643524), ('skip_connect', 1, 0.12947972118854523), "
    "('skip_connect', 0, 0.13062666356563568), ('sep_conv_5x5', 2, 0.12980839610099792), "
    "('sep_conv_3x3', 3, 0.12923765182495117), ('skip_connect', 0, 0.12901571393013), "
    "('sep_conv_5x5', 4, 0.12938997149467468), ('sep_conv_3x3', 3, 0.1289220005273819)], "
    "normal_concat=range(2, 6), reduce=[('sep_conv_5x5', 0, 0.12862831354141235), "
    "('sep_conv_3x3', 1, 0.12783904373645782), ('sep_conv_5x5', 2, 0.12725995481014252), "
    "('sep_conv_5x5', 1, 0.12705285847187042), ('dil_conv_5x5', 2, 0.12797553837299347), "
    "('sep_conv_3x3', 1, 0.12737272679805756), ('sep_conv_5x5', 0, 0.12833961844444275), "
    "('sep_conv_5x5', 1, 0.12758426368236542)], reduce_concat=range(2, 6))"
)
# D-X-Y/AutoDL-Projects, lib/nas_infer_model/DXYs/genotypes.py: GDAS_V1 again, one tuple per node (its
# connectN/connects fields, None there, left out).
GDAS_NESTED = (
    "Genotype(normal=[(('skip_connect', 0), ('skip_connect', 1)), (('skip_connect', 0), ('sep_conv_5x5', 2)), "
    "(('sep_conv_3x3', 3), ('skip_connect', 0)), (('sep_conv_5x5', 4), ('sep_conv_3x3', 3))], "
    "normal_concat=[2, 3, 4, 5], reduce=[(('sep_conv_5x5', 0), ('sep_conv_3x3', 1)), "
    "(('sep_conv_5x5', 2), ('sep_conv_5x5', 1)), (('dil_conv_5x5', 2), ('sep_conv_3x3', 1)), "
    "(('sep_conv_5x5', 0), ('sep_conv_5x5', 1))], reduce_concat=[2, 3, 4, 5])"
)

# xiaomi-automl/FairDARTS, fairdarts/genotypes.py: FairDARTS_d, (op, node, input) triples (its DCOCell unpacks
# them as op_names, tos, froms), the one FairDARTS cell with exactly 2 inputs on every node in both cells.
FAIRDARTS_D = (
    "Genotype(normal=[('sep_conv_3x3', 2, 0), ('sep_conv_5x5', 2, 1), ('dil_conv_3x3', 3, 1), ('max_pool_3x3', 3, 0), "
    "('dil_conv_3x3', 4, 0), ('dil_conv_3x3', 4, 1), ('sep_conv_3x3', 5, 0), ('dil_conv_5x5', 5, 1)], "
    "normal_concat=range(2, 6), reduce=[('max_pool_3x3', 2, 0), ('sep_conv_5x5', 2, 1), ('avg_pool_3x3', 3, 0), "
    "('dil_conv_5x5', 3, 2), ('dil_conv_3x3', 4, 3), ('avg_pool_3x3', 4, 0), ('avg_pool_3x3', 5, 0), "
    "('skip_connect', 5, 3)], reduce_concat=range(2, 6))"
)
FAIRDARTS_D_PLAIN = Genotype.make(
    normal=[("sep_conv_3x3", 0), ("sep_conv_5x5", 1), ("dil_conv_3x3", 1), ("max_pool_3x3", 0),
            ("dil_conv_3x3", 0), ("dil_conv_3x3", 1), ("sep_conv_3x3", 0), ("dil_conv_5x5", 1)],
    reduce=[("max_pool_3x3", 0), ("sep_conv_5x5", 1), ("avg_pool_3x3", 0), ("dil_conv_5x5", 2),
            ("dil_conv_3x3", 3), ("avg_pool_3x3", 0), ("avg_pool_3x3", 0), ("skip_connect", 3)])
# xiaomi-automl/FairDARTS, fairdarts/genotypes.py: FairDARTS_a, whose normal cell leaves node 3 without inputs.
FAIRDARTS_A = (
    "Genotype(normal=[('sep_conv_3x3', 2, 0), ('sep_conv_5x5', 2, 1), ('max_pool_3x3', 4, 0), ('sep_conv_3x3', 5, 0)], "
    "normal_concat=range(2, 6), reduce=[('max_pool_3x3', 2, 0), ('avg_pool_3x3', 2, 1), ('avg_pool_3x3', 3, 0), "
    "('dil_conv_5x5', 3, 1), ('avg_pool_3x3', 4, 0), ('sep_conv_5x5', 4, 1), ('skip_connect', 5, 0), "
    "('skip_connect', 5, 1)], reduce_concat=range(2, 6))"
)


def _strip_weights(text: str) -> str:
    """A weighted genotype string with its weights cut off: the plain form it must parse to."""
    return re.sub(r", 0\.\d+\)", ")", text)


def _json(text: str) -> str:
    """The JSON form of a genotype string as another project would write it (tuples become lists)."""
    def value(node: ast.expr) -> object:
        if isinstance(node, ast.Call):  # range(a, b)
            return list(range(*[a.value for a in node.args]))
        return ast.literal_eval(node)

    return json.dumps({kw.arg: value(kw.value) for kw in ast.parse(text, mode="eval").body.keywords})


@pytest.mark.parametrize("text, plain", [
    (MDENAS_NESTED, MDENAS_PLAIN),
    (GDAS_WEIGHTED, _strip_weights(GDAS_WEIGHTED)),
    (GDAS_NESTED, _strip_weights(GDAS_WEIGHTED)),  # the two GDAS_V1 listings of AutoDL-Projects agree
    (FAIRDARTS_D, str(FAIRDARTS_D_PLAIN)),
    (SNAS_AGGRESSIVE, str(PUBLISHED["SNAS_AGGRESSIVE"])),
])
def test_each_form_parses_to_the_plain_form(text: str, plain: str) -> None:
    g = parse(plain)
    assert "0.1" not in plain and parse(text) == g
    assert parse(_json(text)) == g  # the same form as JSON
    data = json.loads(_json(text))
    assert Genotype.make(data["normal"], data["reduce"]) == g  # and through Genotype.make
    assert parse(str(parse(text))) == g  # written back in the plain form


def test_snas_genotypes_are_published() -> None:
    assert parse("SNAS_AGGRESSIVE") == parse(SNAS_AGGRESSIVE)
    assert {"SNAS_MILD", "SNAS_MODERATE", "SNAS_AGGRESSIVE", "DARTS_V1", "DARTS_V2", "PC_DARTS"} <= set(PUBLISHED)


def test_snas_aggressive_parameter_count() -> None:
    # The DARTS code's NetworkCIFAR (auxiliary head off, or excluded as its utils.count_parameters_in_MB does)
    # with SNAS_aggressive at the CIFAR-10 evaluation setting (20 cells, 36 channels, 10 classes) has 2,313,622
    # parameters: stem 3,132 + cells 2,304,720 + classifier 5,770. latkit's network is that network without the
    # auxiliary head, so the counts are equal; 'none' is Zero(stride) there, with no parameters. (SNAS's own
    # operations.py differs from DARTS' only in a BatchNorm after pooling ops, which this genotype does not use.)
    model = build(PUBLISHED["SNAS_AGGRESSIVE"], NetConfig())
    assert count_params(model) == 2_313_622
    assert sum(p.numel() for p in model.classifier.parameters()) == 5_770


def test_none_edge_has_no_parameters_and_no_macs() -> None:
    g = PUBLISHED["DARTS_V2"]
    config = NetConfig(layers=5, channels=8, resolution=16)

    def with_edge_1(op: str) -> Genotype:  # normal node 2: ('sep_conv_3x3', 0) + (op, 1)
        return Genotype.make([g.normal[0], (op, 1)] + list(g.normal[2:]), g.reduce)

    none, pool = build(with_edge_1("none"), config), build(with_edge_1("max_pool_3x3"), config)
    conv = build(g, config)
    assert count_params(none) == count_params(pool) < count_params(conv)  # pooling has no parameters either
    assert count_macs(none) == count_macs(pool) < count_macs(conv)  # nor MACs (count_macs counts conv/linear)


def test_zero_nodes_are_zeros_and_none_edges_are_left_out() -> None:
    model = build(PUBLISHED["SNAS_AGGRESSIVE"], NetConfig(layers=5, channels=8, resolution=16, batch=2))
    cell = model.cells[1]  # a reduction cell
    assert cell.reduction and cell.nodes == [[0], [2], [4], [6]]  # one edge each; nodes 4 and 5 are Zero ops
    outputs = []
    cell.register_forward_hook(lambda module, inputs, output: outputs.append(output))
    with torch.no_grad():
        model(torch.randn(2, 3, 16, 16))
    out = outputs[0]
    c = out.shape[1] // 4
    assert out.shape == (2, 4 * 16, 8, 8)
    assert torch.count_nonzero(out[:, 2 * c:]) == 0 and torch.count_nonzero(out[:, :2 * c]) > 0


def test_none_edge_encodes_as_an_unused_edge() -> None:
    cells = encode(PUBLISHED["SNAS_AGGRESSIVE"]).reshape(2, EDGES_PER_CELL, len(PRIMITIVES))
    assert np.all(cells.sum(-1) == 1.0)
    assert cells[1, edge_index(1, 1), 0] == 1.0  # reduce node 3 <- input 1 is 'none'
    assert cells[1, edge_index(1, 0), PRIMITIVES.index("sep_conv_5x5")] == 1.0


@pytest.mark.parametrize("text, message", [
    (SNAS_AGGRESSIVE_EDGE_ALL, "normal cell has 14 edges (a full supernet edge list: every input of every node); "
                               "a DARTS cell has 4 nodes of 2 inputs = 8"),
    # NASNet's normal cell as DARTS' cnn/genotypes.py lists it (copied in SNAS-Series SNAS/genotypes.py): 5 nodes;
    # its reduce cell, with ops outside the space, is dropped.
    ("Genotype(normal=[('sep_conv_5x5', 1), ('sep_conv_3x3', 0), ('sep_conv_5x5', 0), ('sep_conv_3x3', 0), "
     "('avg_pool_3x3', 1), ('skip_connect', 0), ('avg_pool_3x3', 0), ('avg_pool_3x3', 0), ('sep_conv_3x3', 1), "
     "('skip_connect', 1)], normal_concat=[2, 3, 4, 5, 6], reduce=[], reduce_concat=[4, 5, 6])",
     "normal cell has 10 edges in 5 nodes; a DARTS cell has 4 nodes of 2 inputs = 8"),
    (MDENAS_NESTED.replace("[('max_pool_3x3', 0), ('sep_conv_5x5', 1)]",
                           "[('max_pool_3x3', 0), ('sep_conv_5x5', 1), ('skip_connect', 1)]"),
     "reduce cell lists nodes of [3, 2, 2, 2] inputs; a DARTS cell has 4 nodes of 2 inputs = 8"),
    (MDENAS_NESTED.replace("('max_pool_3x3', 4)]]",
                           "('max_pool_3x3', 4)], [('skip_connect', 0), ('sep_conv_3x3', 5)]]"),
     "normal cell has 10 edges in 5 nodes; a DARTS cell has 4 nodes of 2 inputs = 8"),
    (FAIRDARTS_A, "normal cell's (op, node, input) triples give nodes 2..5 [2, 0, 1, 1] inputs; "
                  "a DARTS cell has 4 nodes of 2 inputs = 8"),
    (FAIRDARTS_D.replace("('skip_connect', 5, 3)", "('skip_connect', 6, 3)"),
     "reduce edge 7: node 6 of (op, node, input) is out of range 2..5"),
    (GDAS_WEIGHTED.replace("('skip_connect', 1, 0.12947972118854523)", "('skip_connect', 1)"),
     "normal cell mixes edge forms: pair, weighted"),
    (GDAS_WEIGHTED.replace("0.12947972118854523", "'heavy'"),
     "normal edge 1: expected (op name, input index), got ('skip_connect', 1, 'heavy')"),
    (SNAS_AGGRESSIVE.replace("('none', 1), ('none', 0)], reduce_concat", "('none', 0), ('none', 0)], reduce_"
                             "concat"),
     "reduce node 5: both edges read input 0; inputs must be distinct"),
])
def test_cells_outside_the_space_are_rejected_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(GenotypeError) as info:
        parse(text)
    assert str(info.value) == message


def test_sampler_never_draws_none() -> None:
    assert all(op != "none" for i in range(200) for op, _ in sample(1, i).normal + sample(1, i).reduce)
