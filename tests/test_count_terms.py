"""benchmarks/count_terms.py: the names match count_products' columns; the selection lowers the error it reports."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from latkit.space import encode_many, sample

from benchmarks import count_terms


def test_each_name_is_the_product_it_names() -> None:
    genotypes = [sample(3, i) for i in range(20)]
    products = count_terms.count_products(encode_many(genotypes))
    names = count_terms.term_names()
    assert products.shape[1] == len(names) == len(set(names))
    for g, row in zip(genotypes, products):
        count = {cell: {op: sum(o == op for o, _ in edges) for op in count_terms.OPS}
                 for cell, edges in (("normal", g.normal), ("reduce", g.reduce))}
        for name, value in zip(names, row):
            if name.startswith("normal ") and " x reduce " in name:
                a, b = name[len("normal "):].split(" x reduce ")
                assert value == count["normal"][a] * count["reduce"][b]
            else:
                cell, pair = name.split(": ")
                a, b = pair.split(" x ")
                assert value == count[cell][a] * count[cell][b]


def test_forward_selection_only_lowers_the_error() -> None:
    steps = count_terms.forward(str(Path(__file__).parents[1] / "datasets/torch_cpu_b1_r32_c36_l20.parquet"), 2)
    assert steps[0][0] == "op groups alone" and math.isnan(steps[0][3]) and len(steps) == 3
    cv = [c for _, c, _, _ in steps]  # what chooses: each step lowers it
    assert cv[0] > cv[1] > cv[2] and len({t for t, _, _, _ in steps}) == 3
    assert all(np.isfinite(m) and m > 0 for _, _, m, _ in steps) and all(np.isfinite(c) for *_, c in steps[1:])
