"""The DARTS search space: genotypes, their string/JSON forms, validation, the sampler and the encoding.

A cell has 2 input nodes (0, 1) and 4 intermediate nodes (2..5); intermediate node ``i`` (0-based among the
four) takes 2 distinct inputs among nodes ``0 .. i+1``, each through one op, and the cell outputs the concat of
nodes 2..5. A genotype fixes this for a normal and a reduction cell.

Encoding layout (``ENCODING_SIZE`` = 2 x 14 x 8 = 224 floats), read by every latency predictor:
``[normal cell | reduce cell]``, each cell ``14 edges x 8 ops`` in row-major order. The 14 edges are the DARTS
supernet's edges in order: node 2 <- inputs 0,1; node 3 <- 0,1,2; node 4 <- 0..3; node 5 <- 0..4 (edge index of
node ``i`` from input ``j`` is ``i*(i+3)/2 + j``). Ops follow ``PRIMITIVES`` (the op table's order, 'none' first).
A genotype is one-hot per edge, and an edge the genotype does not use is one-hot on 'none', so every row sums
to 1 and every node has exactly ``node + 2 - 2`` 'none' edges.

Architecture weights (softmax(alpha), the search's relaxation) are encoded as the *expected* encoding of the
genotype they describe, not as the raw weights: a genotype keeps exactly two inputs per node, so the count of
'none' edges per node is the same in every training row and no latency dataset can say what 'none' costs. Feeding
raw weights would let that unidentified cost steer the search. See ``encode`` for the definition.
"""
from __future__ import annotations

import ast
import hashlib
import json
from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING, Any, Iterable, Union

import numpy as np

from latkit.errors import LatkitError
from latkit.ops import OPS

if TYPE_CHECKING:
    import torch

PRIMITIVES: tuple[str, ...] = tuple(OPS)
NODES = 4
EDGES_PER_CELL = sum(i + 2 for i in range(NODES))  # 14
ENCODING_SIZE = 2 * EDGES_PER_CELL * len(PRIMITIVES)  # 224
ENCODING_VERSION = 1
CONCAT = (2, 3, 4, 5)
SAMPLER_VERSION = 1

Edge = tuple[str, int]


class GenotypeError(LatkitError):
    """A genotype string, JSON or value that is not a valid DARTS genotype."""


def edge_index(node: int, source: int) -> int:
    """Position of the edge ``source -> intermediate node`` (0-based) among a cell's 14 edges."""
    return node * (node + 3) // 2 + source


@dataclass(frozen=True)
class Genotype:
    """An immutable DARTS genotype; construct through ``Genotype.make`` or ``parse`` to validate."""

    normal: tuple[Edge, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Edge, ...]
    reduce_concat: tuple[int, ...]

    def __post_init__(self) -> None:
        for cell in ("normal", "reduce"):
            _validate_cell(cell, getattr(self, cell), getattr(self, f"{cell}_concat"))

    @classmethod
    def make(cls, normal: Iterable[Any], reduce: Iterable[Any], normal_concat: Iterable[int] = CONCAT,
             reduce_concat: Iterable[int] = CONCAT) -> "Genotype":
        """Build and validate from lists of (op, input) pairs; a malformed pair raises GenotypeError."""
        return cls(_edges("normal", normal), _concat("normal", normal_concat),
                   _edges("reduce", reduce), _concat("reduce", reduce_concat))

    def __str__(self) -> str:
        def cell(edges: tuple[Edge, ...]) -> str:
            return "[" + ", ".join(f"('{op}', {j})" for op, j in edges) + "]"

        def concat(c: tuple[int, ...]) -> str:
            return f"range({c[0]}, {c[-1] + 1})"

        return (f"Genotype(normal={cell(self.normal)}, normal_concat={concat(self.normal_concat)}, "
                f"reduce={cell(self.reduce)}, reduce_concat={concat(self.reduce_concat)})")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return {"normal": [list(e) for e in self.normal], "normal_concat": list(self.normal_concat),
                "reduce": [list(e) for e in self.reduce], "reduce_concat": list(self.reduce_concat)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Any) -> "Genotype":
        if not isinstance(data, dict):
            raise GenotypeError("genotype JSON must be an object with 'normal' and 'reduce'")
        missing = {"normal", "reduce"} - data.keys()
        if missing:
            raise GenotypeError(f"genotype JSON lacks {', '.join(sorted(missing))}")
        return cls.make(data["normal"], data["reduce"], data.get("normal_concat", CONCAT),
                        data.get("reduce_concat", CONCAT))

    @classmethod
    def from_json(cls, text: str) -> "Genotype":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GenotypeError(f"genotype is not valid JSON: {exc.msg} at position {exc.pos}") from None
        return cls.from_dict(data)


def _edges(cell: str, edges: Any) -> tuple[Edge, ...]:
    try:
        pairs = [tuple(e) for e in edges]
    except TypeError:
        raise GenotypeError(f"{cell} cell must be a list of (op, input) pairs") from None
    for k, pair in enumerate(pairs):
        if len(pair) != 2 or not isinstance(pair[0], str) or not isinstance(pair[1], int) or isinstance(pair[1], bool):
            raise GenotypeError(f"{cell} edge {k}: expected (op name, input index), got {pair!r}")
    return tuple((str(op), int(j)) for op, j in pairs)


def _concat(cell: str, concat: Any) -> tuple[int, ...]:
    try:
        return tuple(int(c) for c in concat)
    except (TypeError, ValueError):
        raise GenotypeError(f"{cell}_concat must be a list of node indices") from None


def _validate_cell(cell: str, edges: tuple[Edge, ...], concat: tuple[int, ...]) -> None:
    if len(edges) != 2 * NODES:
        raise GenotypeError(f"{cell} cell has {len(edges)} edges; a DARTS cell has {NODES} nodes of 2 inputs = 8")
    for k, (op, j) in enumerate(edges):
        node = k // 2
        if op == "none":
            raise GenotypeError(f"{cell} node {node + 2}: op 'none' is not allowed in a genotype")
        if op not in OPS:
            raise GenotypeError(f"{cell} node {node + 2}: unknown op {op!r} (known: {', '.join(PRIMITIVES[1:])})")
        if not 0 <= j < node + 2:
            raise GenotypeError(f"{cell} node {node + 2}: input {j} out of range 0..{node + 1}")
    for node in range(NODES):
        if edges[2 * node][1] == edges[2 * node + 1][1]:
            raise GenotypeError(f"{cell} node {node + 2}: both edges read input {edges[2 * node][1]}; "
                                "inputs must be distinct")
    if tuple(concat) != CONCAT:
        raise GenotypeError(f"{cell}_concat is {list(concat)}; the DARTS space concatenates nodes [2, 3, 4, 5]")


def _literal(node: ast.AST, what: str) -> Any:
    """Evaluate a literal AST node, also accepting ``range(a, b)``; anything else is a GenotypeError."""
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range"
            and not node.keywords and 1 <= len(node.args) <= 2):
        return list(range(*[_literal(a, what) for a in node.args]))
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        raise GenotypeError(f"{what}: expected a literal, got {ast.unparse(node)!r}") from None


def parse(text: str) -> Genotype:
    """Parse a genotype from its DARTS string form, its JSON form, or a published name (e.g. ``DARTS_V2``)."""
    text = text.strip()
    if text in PUBLISHED:
        return PUBLISHED[text]
    if text.startswith("{"):
        return Genotype.from_json(text)
    if not text.startswith("Genotype("):
        names = ", ".join(PUBLISHED)
        raise GenotypeError(f"not a genotype: expected 'Genotype(...)', JSON or a published name ({names})")
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as exc:
        raise GenotypeError(f"genotype string is malformed: {exc.msg} at column {exc.offset}") from None
    if not isinstance(tree, ast.Call) or tree.args:
        raise GenotypeError("genotype string must be Genotype(normal=..., normal_concat=..., reduce=..., "
                            "reduce_concat=...) with keyword arguments")
    fields = {kw.arg: _literal(kw.value, str(kw.arg)) for kw in tree.keywords}
    unknown = set(fields) - {"normal", "normal_concat", "reduce", "reduce_concat"}
    if unknown:
        raise GenotypeError(f"genotype string has unknown field(s): {', '.join(sorted(map(str, unknown)))}")
    return Genotype.from_dict(fields)


PUBLISHED: dict[str, Genotype] = {
    # Liu et al., DARTS (first order), cnn/genotypes.py of the authors' code.
    "DARTS_V1": Genotype.make(
        normal=[("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
                ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)],
        reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
                ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)]),
    # DARTS (second order), the authors' default genotype.
    "DARTS_V2": Genotype.make(
        normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
                ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
        reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
                ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)]),
    # Xu et al., PC-DARTS, CIFAR-10 genotype from the authors' code.
    "PC_DARTS": Genotype.make(
        normal=[("sep_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 0), ("dil_conv_3x3", 1),
                ("sep_conv_5x5", 0), ("sep_conv_3x3", 1), ("avg_pool_3x3", 0), ("dil_conv_3x3", 1)],
        reduce=[("sep_conv_5x5", 1), ("max_pool_3x3", 0), ("sep_conv_5x5", 1), ("sep_conv_5x5", 2),
                ("sep_conv_3x3", 0), ("sep_conv_3x3", 3), ("sep_conv_3x3", 1), ("sep_conv_3x3", 2)]),
}


class _Stream:
    """Uniform integers from SHA-256 in counter mode: identical on every machine and Python version."""

    def __init__(self, seed: int, index: int):
        self._prefix = f"latkit-sampler-v{SAMPLER_VERSION}:{seed}:{index}:".encode()
        self._counter = 0

    def below(self, n: int) -> int:
        digest = hashlib.sha256(self._prefix + str(self._counter).encode()).digest()
        self._counter += 1
        return int.from_bytes(digest, "big") % n  # 256-bit draw: modulo bias < 2**-240


def sample(seed: int, index: int) -> Genotype:
    """The ``index``-th architecture of sampling campaign ``seed``, uniform over the space without 'none'.

    Each node picks 2 distinct inputs uniformly among its predecessors and an op for each uniformly among the 7
    non-'none' ops. The result depends only on (seed, index), so campaigns can be sharded by index.
    """
    if seed < 0 or index < 0:
        raise LatkitError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    stream = _Stream(seed, index)
    ops = PRIMITIVES[1:]
    cells = []
    for _ in range(2):
        edges: list[Edge] = []
        for node in range(NODES):
            pairs = list(combinations(range(node + 2), 2))
            a, b = pairs[stream.below(len(pairs))]
            edges += [(ops[stream.below(len(ops))], a), (ops[stream.below(len(ops))], b)]
        cells.append(edges)
    return Genotype.make(normal=cells[0], reduce=cells[1])


def encode(arch: Union[Genotype, tuple["torch.Tensor", "torch.Tensor"]]) -> Any:
    """Encode a genotype (numpy float32 one-hot) or architecture weights (torch, differentiable).

    Architecture weights are ``(w_normal, w_reduce)``, each ``(14, 8)`` (softmax(alpha) over ops), or with a
    leading batch dimension; they are encoded by ``relaxed_encoding``. See the module docstring for the layout.
    """
    if isinstance(arch, Genotype):
        return encode_many([arch])[0]
    import torch

    w_normal, w_reduce = arch
    shape = (EDGES_PER_CELL, len(PRIMITIVES))
    if tuple(w_normal.shape[-2:]) != shape or tuple(w_reduce.shape[-2:]) != shape:
        raise LatkitError(f"architecture weights must be {shape} per cell, got {tuple(w_normal.shape)} "
                          f"and {tuple(w_reduce.shape)}")
    lead = w_normal.shape[:-2]
    cells = [relaxed_encoding(w).reshape(*lead, -1) for w in (w_normal, w_reduce)]
    return torch.cat(cells, dim=-1)


STRENGTH_EPS = 1e-12  # keeps an edge whose non-'none' weights all underflow to 0 selectable (and no 0/0)


def relaxed_encoding(weights: "torch.Tensor") -> "torch.Tensor":
    """The expected one-hot encoding of the genotype that one cell's weights ``(..., 14, 8)`` describe.

    The weights define a distribution over genotypes that mirrors DARTS' derivation, and the encoding is its mean:

    - an edge's op, given the edge is kept, is drawn from its non-'none' weights renormalised,
      ``q(e, o) = w(e, o) / sum_{o' != none} w(e, o')`` ('none' is never an op of a genotype);
    - each node keeps 2 of its input edges, drawn without replacement with probability proportional to the edge's
      DARTS strength ``s(e) = max_{o != none} w(e, o)``; ``pi(e)`` is the probability that edge ``e`` is kept,
      ``pi(e) = p(e) + sum_{j != e} p(j) p(e) / (1 - p(j))`` with ``p = s / sum(s)`` over the node's edges;
    - the encoding is ``pi(e) q(e, o)`` on ops and ``1 - pi(e)`` on 'none'.

    Every node's ``pi`` sums to 2, so the encoding satisfies every linear constraint that genotype encodings do
    (each edge sums to 1; each node has the same mass on 'none'): a linear predictor gives it exactly the
    expected latency of the distribution, any two predictors that agree on all genotypes agree on it, and the
    MLP is evaluated inside the convex hull of what it was trained on. As the weights sharpen toward a genotype
    (kept edges one-hot on their op, other edges on 'none') the encoding converges to that genotype's one-hot.
    """
    import torch

    ops = weights[..., 1:]
    q = ops / ops.sum(-1, keepdim=True).clamp_min(STRENGTH_EPS)
    strength = ops.amax(-1) + STRENGTH_EPS
    kept = []
    for node in range(NODES):
        start = edge_index(node, 0)
        s = strength[..., start: start + node + 2]
        k = s.shape[-1]
        off = 1.0 - torch.eye(k, dtype=s.dtype, device=s.device)
        others = s @ off  # sum of the other edges' strengths, without cancellation
        p = s / s.sum(-1, keepdim=True)
        ratio = s / others  # p(j) / (1 - p(j))
        kept.append(p * (1.0 + ratio @ off))
    pi = torch.cat(kept, dim=-1).clamp(0.0, 1.0).unsqueeze(-1)
    return torch.cat([1.0 - pi, pi * q], dim=-1)


def encode_many(genotypes: Iterable[Genotype]) -> np.ndarray:
    """Encode many genotypes into a ``(n, ENCODING_SIZE)`` float32 array."""
    genotypes = list(genotypes)
    out = np.zeros((len(genotypes), 2, EDGES_PER_CELL, len(PRIMITIVES)), dtype=np.float32)
    out[:, :, :, 0] = 1.0  # every edge starts as 'none'
    op_index = {op: k for k, op in enumerate(PRIMITIVES)}
    for g, genotype in enumerate(genotypes):
        for c, edges in enumerate((genotype.normal, genotype.reduce)):
            for k, (op, j) in enumerate(edges):
                e = edge_index(k // 2, j)
                out[g, c, e, 0] = 0.0
                out[g, c, e, op_index[op]] = 1.0
    return out.reshape(len(genotypes), ENCODING_SIZE)
