from __future__ import annotations

import numpy as np
import pytest
import torch

from latkit.ops import OPS
from latkit.space import (EDGES_PER_CELL, ENCODING_SIZE, PRIMITIVES, PUBLISHED, Genotype, GenotypeError,
                          edge_index, encode, encode_many, parse, sample)

DARTS_V2_STRING = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], "
    "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), "
    "('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)


def test_op_table_is_the_darts_primitives() -> None:
    assert PRIMITIVES == ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
                          "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
    assert tuple(OPS) == PRIMITIVES


def test_parse_authors_string_with_list_or_range_concat() -> None:
    g = parse(DARTS_V2_STRING)
    assert g == PUBLISHED["DARTS_V2"]
    assert parse(DARTS_V2_STRING.replace("[2, 3, 4, 5]", "range(2, 6)")) == g
    assert parse(str(g)) == g
    assert "normal_concat=range(2, 6)" in str(g)


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_round_trips(name: str) -> None:
    g = PUBLISHED[name]
    assert parse(name) is g
    assert parse(str(g)) == g
    assert Genotype.from_json(g.to_json()) == g
    assert parse(g.to_json()) == g
    assert hash(parse(str(g))) == hash(g)


def test_genotype_is_immutable() -> None:
    g = PUBLISHED["DARTS_V1"]
    with pytest.raises(AttributeError):
        g.normal = ()  # type: ignore[misc]


def _with(cell: list, k: int, edge: tuple) -> str:
    """DARTS_V2's string with normal edge ``k`` replaced."""
    cell = list(cell)
    cell[k] = edge
    return (f"Genotype(normal={cell!r}, normal_concat=[2, 3, 4, 5], "
            f"reduce={list(PUBLISHED['DARTS_V2'].reduce)!r}, reduce_concat=[2, 3, 4, 5])")


@pytest.mark.parametrize("k, edge, fault", [
    (0, ("conv_7x7", 0), "unknown op 'conv_7x7'"),
    (2, ("sep_conv_3x3", 3), "node 3: input 3 out of range 0..2"),
    (4, ("none", 0), "node 4: both edges read input 0"),  # 'none' is an op now, the inputs rule still holds
    (1, ("sep_conv_3x3", 0), "node 2: both edges read input 0"),
])
def test_validation_names_the_fault(k: int, edge: tuple, fault: str) -> None:
    with pytest.raises(GenotypeError, match=fault.replace("(", r"\(").replace(")", r"\)")):
        parse(_with(list(PUBLISHED["DARTS_V2"].normal), k, edge))


@pytest.mark.parametrize("text, fault", [
    (DARTS_V2_STRING.replace("('dil_conv_3x3', 2)], normal_concat", "], normal_concat").replace(
        "('skip_connect', 0), ], normal", "('skip_connect', 0)], normal"), "normal cell has 7 edges"),
    (DARTS_V2_STRING.replace("reduce_concat=[2, 3, 4, 5]", "reduce_concat=[2, 3, 4]"), "reduce_concat is"),
    (DARTS_V2_STRING.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=__import__('os')"), "expected a literal"),
    ("Genotype(normal=[", "malformed"),
    ("DARTS_V9", "not a genotype"),
    ('{"normal": []}', "lacks reduce"),
    ('{"normal": [', "not valid JSON"),
])
def test_malformed_input_is_a_genotype_error(text: str, fault: str) -> None:
    with pytest.raises(GenotypeError, match=fault):
        parse(text)


def _v2(old: str, new: str) -> str:
    """DARTS_V2's string with one part replaced."""
    assert old in DARTS_V2_STRING
    return DARTS_V2_STRING.replace(old, new)


@pytest.mark.parametrize("text, message", [
    # range() of non-integers: was a TypeError traceback
    (_v2("normal_concat=[2, 3, 4, 5]", "normal_concat=range('a', 6)"),
     "normal_concat: range() needs integer arguments (and a non-zero step), got \"range('a', 6)\""),
    (_v2("normal_concat=[2, 3, 4, 5]", "normal_concat=range(2, 6, 0)"),
     "normal_concat: range() needs integer arguments (and a non-zero step), got 'range(2, 6, 0)'"),
    # too deep to parse: were a RecursionError / MemoryError traceback
    ('{"normal": ' + "[" * 100000 + "]" * 100000 + "}", "genotype JSON is nested too deeply"),
    ("Genotype(normal=" + "-" * 100000 + "1)", "genotype string is nested too deeply"),
    ("Genotype(normal=" + "a." * 100000 + "b)", "genotype string is nested too deeply"),
    ("Genotype(normal=" + "-" * 900 + "x)", "genotype string is nested too deeply"),  # its error message recursed
    ('{"normal": [1' + "0" * 5000 + "]}", "genotype JSON is not readable: Exceeds the limit"),
    # a huge range is compared as a range and a long list rejected by its length: were expanded into a list
    (_v2("normal_concat=[2, 3, 4, 5]", "normal_concat=range(2, 1000000000)"),
     "normal_concat is range(2, 1000000000); the DARTS space concatenates nodes [2, 3, 4, 5]"),
    (_v2("normal_concat=[2, 3, 4, 5]", "normal_concat=[" + "2, " * 1000000 + "]"),
     "normal_concat is a list of 1000000 nodes; the DARTS space concatenates nodes [2, 3, 4, 5]"),
    # non-integer node indices: 2.9 was silently read as 2
    (_v2("normal_concat=[2, 3, 4, 5]", "normal_concat=[2.9, 3, 4, 5]"),
     "normal_concat: node indices must be integers, got 2.9"),
    (_v2("reduce_concat=[2, 3, 4, 5]", "reduce_concat=[2, True, 4, 5]"),
     "reduce_concat: node indices must be integers, got True"),
    (_v2("reduce_concat=[2, 3, 4, 5]", "reduce_concat=['2', 3, 4, 5]"),
     "reduce_concat: node indices must be integers, got '2'"),
    # a missing field names the form that was given and the fields it had
    (DARTS_V2_STRING.split(", reduce=")[0] + ")", "genotype string lacks reduce (given: normal, normal_concat)"),
    ('{"normal": [], "normal_concat": [2, 3, 4, 5]}', "genotype JSON lacks reduce (given: normal, normal_concat)"),
    ('{"reduce": []}', "genotype JSON lacks normal (given: reduce)"),
    (_v2("normal_concat=", "normal_conact="),
     "genotype string has unknown field(s): normal_conact (known: normal, normal_concat, reduce, reduce_concat)"),
    ('{"normal": [], "reduce": [], "reduce_conact": []}', "genotype JSON has unknown field(s): reduce_conact"),
    (_v2("normal_concat=[2, 3, 4, 5]", "normal_concat=[2, 3, 4, 5], normal_concat=range(2, 6)"),
     "each field once (given: normal, normal_concat, normal_concat, reduce, reduce_concat)"),
    ("Genotype(**{'normal': []})", "with keyword arguments"),
    ("Genotype(x=1)(normal=[], reduce=[])", "with keyword arguments"),
])
def test_bad_input_message(text: str, message: str) -> None:
    with pytest.raises(GenotypeError) as info:
        parse(text)
    assert message in str(info.value) and "\n" not in str(info.value) and len(str(info.value)) < 300


def test_concat_range_is_not_expanded() -> None:
    g = PUBLISHED["DARTS_V2"]
    assert Genotype.make(g.normal, g.reduce, range(2, 6), range(2, 6)) == g
    with pytest.raises(GenotypeError, match=r"^reduce_concat is range\(2, 1000000000000000000\);"):
        Genotype.make(g.normal, g.reduce, reduce_concat=range(2, 10**18))  # expanding it would never finish


def test_sampler_is_deterministic_and_pinned() -> None:
    assert sample(0, 0) == sample(0, 0)
    assert sample(0, 0) != sample(0, 1) and sample(0, 0) != sample(1, 0)
    # Pinned value: the sampler must give this on every machine and Python version (sharding relies on it).
    assert str(sample(0, 0)) == (
        "Genotype(normal=[('sep_conv_5x5', 0), ('sep_conv_5x5', 1), ('max_pool_3x3', 0), ('max_pool_3x3', 2), "
        "('skip_connect', 1), ('dil_conv_3x3', 2), ('sep_conv_5x5', 0), ('dil_conv_5x5', 3)], "
        "normal_concat=range(2, 6), reduce=[('dil_conv_3x3', 0), ('skip_connect', 1), ('sep_conv_5x5', 0), "
        "('skip_connect', 2), ('sep_conv_5x5', 1), ('dil_conv_3x3', 3), ('sep_conv_3x3', 1), ('sep_conv_5x5', 4)], "
        "reduce_concat=range(2, 6))")


def test_sampler_is_uniform_over_ops_and_inputs() -> None:
    n = 3000
    ops = {op: 0 for op in PRIMITIVES[1:]}
    last_node_inputs = np.zeros(5)
    for i in range(n):
        g = sample(7, i)
        for op, _ in g.normal + g.reduce:
            ops[op] += 1
        for _, j in g.normal[6:]:
            last_node_inputs[j] += 1
    expected = n * 16 / 7
    for op, count in ops.items():
        assert abs(count - expected) < 5 * expected ** 0.5, (op, count, expected)
    # node 5 picks 2 of 5 inputs: each input is used with probability 2/5
    assert np.all(np.abs(last_node_inputs - n * 2 / 5) < 5 * (n * 0.4 * 0.6) ** 0.5)


def test_edge_index_layout() -> None:
    assert [edge_index(i, 0) for i in range(4)] == [0, 2, 5, 9]
    assert edge_index(3, 4) == EDGES_PER_CELL - 1


def test_encoding_of_genotype() -> None:
    g = PUBLISHED["DARTS_V2"]
    x = encode(g)
    assert x.shape == (ENCODING_SIZE,) and x.dtype == np.float32
    cells = x.reshape(2, EDGES_PER_CELL, len(PRIMITIVES))
    assert np.all(cells.sum(-1) == 1.0)  # one-hot per edge, unused edges on 'none'
    assert cells[0, edge_index(3, 2), PRIMITIVES.index("dil_conv_3x3")] == 1.0
    assert cells[1, edge_index(0, 0), PRIMITIVES.index("max_pool_3x3")] == 1.0
    assert cells[0, edge_index(0, 0), 0] == 0.0 and cells[0, edge_index(3, 1), 0] == 1.0
    assert (cells[:, :, 0] == 0).sum() == 16
    np.testing.assert_array_equal(encode_many([g, g]), np.stack([x, x]))


def test_encoding_of_weights_matches_genotype_layout_and_is_differentiable() -> None:
    g = sample(3, 5)
    onehot = torch.from_numpy(encode(g)).reshape(2, EDGES_PER_CELL, len(PRIMITIVES))
    w_normal = onehot[0].clone().requires_grad_(True)
    x = encode((w_normal, onehot[1]))
    assert torch.equal(x, torch.from_numpy(encode(g)))  # a genotype's one-hot weights are their own relaxation
    (x * torch.arange(ENCODING_SIZE)).sum().backward()
    assert torch.isfinite(w_normal.grad).all() and w_normal.grad.abs().sum() > 0
    batched = encode((torch.rand(4, 14, 8), torch.rand(4, 14, 8)))
    assert batched.shape == (4, ENCODING_SIZE)
