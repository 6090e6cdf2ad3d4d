"""benchmarks/interactions.py: the interaction features against a direct reading of each genotype (no timing)."""
from itertools import combinations_with_replacement


from latkit.space import PRIMITIVES, encode_many, sample

from benchmarks import interactions


def test_node_pairs_name_the_two_ops_feeding_each_node() -> None:
    genotypes = [sample(3, i) for i in range(20)]
    f = interactions.node_pairs(encode_many(genotypes)).reshape(20, 2, 4, -1)
    pairs = list(combinations_with_replacement(range(1, len(PRIMITIVES)), 2))
    for g, genotype in enumerate(genotypes):
        for c, edges in enumerate((genotype.normal, genotype.reduce)):
            for node in range(4):
                ops = tuple(sorted(PRIMITIVES.index(op) for op, _ in edges[2 * node: 2 * node + 2]))
                assert f[g, c, node].sum() == 1 and f[g, c, node, pairs.index(ops)] == 1


def test_count_products_multiply_the_cells_op_counts() -> None:
    genotype = sample(5, 0)
    f = interactions.count_products(encode_many([genotype]))[0]
    counts = [[sum(op == name for op, _ in cell) for name in PRIMITIVES[1:]]
              for cell in (genotype.normal, genotype.reduce)]
    within = [counts[c][i] * counts[c][j] for c in range(2) for i, j in combinations_with_replacement(range(7), 2)]
    across = [counts[0][i] * counts[1][j] for i in range(7) for j in range(7)]
    assert f.tolist() == within + across
