"""The DARTS search space: genotypes, their string/JSON forms, validation, the sampler and the encoding.

A cell has 2 input nodes (0, 1) and 4 intermediate nodes (2..5); intermediate node ``i`` (0-based among the
four) takes 2 distinct inputs among nodes ``0 .. i+1``, each through one op, and the cell outputs the concat of
nodes 2..5. A genotype fixes this for a normal and a reduction cell. An edge's op may be 'none', the zero op
(SNAS's published cells keep it): it has no parameters and no cost, and the node is the other edge's output (zeros
if both of its edges are 'none').

Encoding layout (``ENCODING_SIZE`` = 2 x 14 x 8 = 224 floats), read by every latency predictor:
``[normal cell | reduce cell]``, each cell ``14 edges x 8 ops`` in row-major order. The 14 edges are the DARTS
supernet's edges in order: node 2 <- inputs 0,1; node 3 <- 0,1,2; node 4 <- 0..3; node 5 <- 0..4 (edge index of
node ``i`` from input ``j`` is ``i*(i+3)/2 + j``). Ops follow ``PRIMITIVES`` (the op table's order, 'none' first).
A genotype is one-hot per edge, and an edge the genotype does not use is one-hot on 'none' (as is a kept 'none'
edge, which costs nothing), so every row sums to 1; a sampled genotype keeps exactly two inputs per node, so each
node has the same number of 'none' edges in every row of a latency dataset.

Architecture weights (softmax(alpha), the search's relaxation) are encoded as the *expected* encoding of the
genotype they describe, not as the raw weights: a genotype keeps exactly two inputs per node, so the count of
'none' edges per node is the same in every training row and no latency dataset can say what 'none' costs. Feeding
raw weights would let that unidentified cost steer the search. See ``encode`` for the definition.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import json
import reprlib
from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING, Any, Iterable, Union

import numpy as np

from latkit.errors import LatkitError
from latkit.ops import OPS, merge_key

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
    def make(cls, normal: Any, reduce: Any, normal_concat: Any = CONCAT,
             reduce_concat: Any = CONCAT) -> "Genotype":
        """Build and validate from each cell's edges in any form ``parse`` accepts; bad input is a GenotypeError."""
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
        """The JSON form (``to_dict`` compactly serialised)."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Any) -> "Genotype":
        """Build from the JSON form's data: an object with ``normal``, ``reduce`` and optional concats."""
        return cls._from_fields(data, "JSON")

    @classmethod
    def _from_fields(cls, data: Any, form: str) -> "Genotype":
        """Build from named fields; ``form`` ('JSON' or 'string') names the input in error messages."""
        if not isinstance(data, dict):
            raise GenotypeError(f"genotype {form} must be an object with 'normal' and 'reduce'")
        unknown = sorted(str(k) for k in data if k not in FIELDS)
        if unknown:
            raise GenotypeError(f"genotype {form} has unknown field(s): {_listing(unknown)} "
                                f"(known: {', '.join(FIELDS)})")
        missing = [k for k in ("normal", "reduce") if k not in data]
        if missing:
            raise GenotypeError(f"genotype {form} lacks {', '.join(missing)} (given: {_listing(list(data))})")
        return cls.make(data["normal"], data["reduce"], data.get("normal_concat", CONCAT),
                        data.get("reduce_concat", CONCAT))

    @classmethod
    def from_json(cls, text: str) -> "Genotype":
        """Parse the JSON form; malformed or too deeply nested JSON is a GenotypeError."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GenotypeError(f"genotype is not valid JSON: {exc.msg} at position {exc.pos}") from None
        except ValueError as exc:  # e.g. an integer longer than Python converts
            raise GenotypeError(f"genotype JSON is not readable: {exc}") from None
        except (RecursionError, MemoryError):
            raise GenotypeError("genotype JSON is nested too deeply") from None
        return cls.from_dict(data)


FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")
CELL_SHAPE = f"a DARTS cell has {NODES} nodes of 2 inputs = {2 * NODES}"


def _show(value: Any) -> str:
    """A short one-line repr of user input for error messages (bounded depth and length, never recursing deep)."""
    return reprlib.repr(value)


def _listing(names: list[Any]) -> str:
    """Up to 8 names, each cut to 40 characters, for error messages; 'nothing' if none."""
    shown = [str(n)[:40] for n in names[:8]]
    return ", ".join(shown + ["..."] * (len(names) > 8)) or "nothing"


def _is_int(value: Any) -> bool:
    """An integer that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def _edge_form(edge: Any) -> str:
    """Which form one edge is in: 'pair' (op, input), 'weighted' (op, input, weight), 'node' (op, node, input),
    or '' if none of them."""
    if not isinstance(edge, (list, tuple)) or len(edge) not in (2, 3) or not isinstance(edge[0], str) \
            or not _is_int(edge[1]):
        return ""
    if len(edge) == 2:
        return "pair"
    return "weighted" if isinstance(edge[2], float) else "node" if _is_int(edge[2]) else ""


def _edges(cell: str, edges: Any) -> tuple[Edge, ...]:
    """One cell's edges as ``((op, input), ...)``, converted from any of the forms projects print:

    - ``[(op, input), ...]``, 2 per node in node order: the DARTS authors' form (and latkit's);
    - ``[[(op, input), (op, input)], ...]``, one list per node: pt.darts (khanrc/pt.darts ``genotypes.py``), MdeNAS
      (tanglang96/MDENAS ``run_darts_cifar.sh``), AutoDL-Projects (``lib/nas_infer_model/DXYs/genotypes.py``);
    - ``[(op, input, weight), ...]`` with a float weight, which is dropped: GDAS's original genotypes
      (D-X-Y/AutoDL-Projects ``others/GDAS/lib/nas/genotypes.py``);
    - ``[(op, node, input), ...]`` with node in 2..5, in any order: FairDARTS (xiaomi-automl/FairDARTS
      ``fairdarts/genotypes.py``; its ``DCOCell`` unpacks ``op_names, tos, froms``), regrouped by node.
    """
    if not isinstance(edges, (list, tuple)):
        raise GenotypeError(f"{cell} cell must be a list of (op, input) pairs, got {_show(edges)}")
    if edges and all(isinstance(n, (list, tuple)) and n and all(isinstance(e, (list, tuple)) for e in n)
                     for n in edges):  # one list per node
        sizes = [len(n) for n in edges]
        if any(size != 2 for size in sizes):
            raise GenotypeError(f"{cell} cell lists nodes of {_show(sizes)} inputs; {CELL_SHAPE}")
        edges = [e for n in edges for e in n]
    forms = [_edge_form(e) for e in edges]
    for k, form in enumerate(forms):
        if not form:
            raise GenotypeError(f"{cell} edge {k}: expected (op name, input index), got {_show(edges[k])}")
    if len(set(forms)) > 1:
        raise GenotypeError(f"{cell} cell mixes edge forms: {', '.join(sorted(set(forms)))}")
    if forms and forms[0] == "node":
        return _by_node(cell, edges)
    _check_count(cell, len(edges))
    return tuple((op, j) for op, j, *_ in edges)


def _by_node(cell: str, triples: list[Any]) -> tuple[Edge, ...]:
    """FairDARTS' ``(op, node, input)`` triples regrouped as 2 ``(op, input)`` pairs per node, in node order."""
    for k, (_, node, _) in enumerate(triples):
        if not 2 <= node <= NODES + 1:
            raise GenotypeError(f"{cell} edge {k}: node {_show(node)} of (op, node, input) is out of range "
                                f"2..{NODES + 1}")
    nodes = [[(op, j) for op, n, j in triples if n == node] for node in range(2, NODES + 2)]
    sizes = [len(n) for n in nodes]
    if sizes != [2] * NODES:
        raise GenotypeError(f"{cell} cell's (op, node, input) triples give nodes 2..{NODES + 1} {sizes} inputs; "
                            f"{CELL_SHAPE}")
    return tuple(e for n in nodes for e in n)


def _check_count(cell: str, n: int) -> None:
    """A cell must have 8 edges; a wrong count names the likely cause (a supernet edge list, a 5-node cell)."""
    if n != 2 * NODES:
        shape = (" (a full supernet edge list: every input of every node)" if n == EDGES_PER_CELL
                 else f" in {n // 2} nodes" if n % 2 == 0 and n > 2 else "")
        raise GenotypeError(f"{cell} cell has {n} edges{shape}; {CELL_SHAPE}")


def _concat(cell: str, concat: Any) -> tuple[int, ...]:
    """A cell's concat as a tuple of node indices, checked without expanding it: a ``range`` is compared as a
    range and a list of the wrong length is rejected before its items are read."""
    wrong = f"the DARTS space concatenates nodes {list(CONCAT)}"
    if isinstance(concat, range):
        if concat != range(CONCAT[0], CONCAT[-1] + 1):
            raise GenotypeError(f"{cell}_concat is {concat}; {wrong}")
        return CONCAT
    if not isinstance(concat, (list, tuple)):
        raise GenotypeError(f"{cell}_concat must be a list of node indices, got {_show(concat)}")
    if len(concat) != len(CONCAT):
        raise GenotypeError(f"{cell}_concat is a list of {len(concat)} nodes; {wrong}")
    for c in concat:
        if not _is_int(c):
            raise GenotypeError(f"{cell}_concat: node indices must be integers, got {_show(c)}")
    return tuple(concat)


def _validate_cell(cell: str, edges: tuple[Edge, ...], concat: tuple[int, ...]) -> None:
    """Check one cell against the space: 8 edges, known ops ('none' included), inputs in range and distinct."""
    _check_count(cell, len(edges))
    for k, (op, j) in enumerate(edges):
        node = k // 2
        if op not in OPS:
            raise GenotypeError(f"{cell} node {node + 2}: unknown op {_show(op)} (known: {', '.join(PRIMITIVES)})")
        if not 0 <= j < node + 2:
            raise GenotypeError(f"{cell} node {node + 2}: input {_show(j)} out of range 0..{node + 1}")
    for node in range(NODES):
        if edges[2 * node][1] == edges[2 * node + 1][1]:
            raise GenotypeError(f"{cell} node {node + 2}: both edges read input {edges[2 * node][1]}; "
                                "inputs must be distinct")
    if concat != CONCAT:
        raise GenotypeError(f"{cell}_concat is {_show(concat)}; the DARTS space concatenates nodes {list(CONCAT)}")


def _literal(node: ast.AST, what: str) -> Any:
    """Evaluate a literal AST node, also accepting ``range(...)`` of integers (kept a ``range``, never expanded);
    anything else is a GenotypeError naming the field ``what``."""
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range"
            and not node.keywords and 1 <= len(node.args) <= 3):
        args = [_literal(a, what) for a in node.args]
        if not all(_is_int(a) for a in args) or (len(args) == 3 and args[2] == 0):
            raise GenotypeError(f"{what}: range() needs integer arguments (and a non-zero step), "
                                f"got {_show(ast.unparse(node))}")
        return range(*args)
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        raise GenotypeError(f"{what}: expected a literal, got {_show(ast.unparse(node))}") from None


def parse(text: str) -> Genotype:
    """Parse a genotype from its DARTS string form, its JSON form, or a published name (e.g. ``DARTS_V2``).

    Each cell may be given in any form ``_edges`` lists (plain pairs, one list per node, GDAS's weighted triples,
    FairDARTS' (op, node, input) triples); an op may be 'none', the zero op of SNAS's published cells.
    """
    text = text.strip()
    if text in PUBLISHED:
        return PUBLISHED[text]
    if text.startswith("{"):
        return Genotype.from_json(text)
    if not text.startswith("Genotype("):
        names = ", ".join(PUBLISHED)
        raise GenotypeError(f"not a genotype: expected 'Genotype(...)', JSON or a published name ({names})")
    usage = "genotype string must be Genotype(normal=..., normal_concat=..., reduce=..., reduce_concat=...)"
    try:
        tree = ast.parse(text, mode="eval").body
        if not (isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name) and tree.func.id == "Genotype"
                and not tree.args and all(kw.arg for kw in tree.keywords)):
            raise GenotypeError(f"{usage} with keyword arguments")
        given = [str(kw.arg) for kw in tree.keywords]
        if len(set(given)) != len(given):
            raise GenotypeError(f"{usage}, each field once (given: {_listing(given)})")
        fields = {str(kw.arg): _literal(kw.value, str(kw.arg)) for kw in tree.keywords}
    except SyntaxError as exc:
        raise GenotypeError(f"genotype string is malformed: {exc.msg} at column {exc.offset}") from None
    except (RecursionError, MemoryError):
        raise GenotypeError("genotype string is nested too deeply") from None
    return Genotype._from_fields(fields, "string")


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
    # Xie et al., SNAS, mild / moderate / aggressive resource constraint: SNAS_mild, SNAS_moderate and
    # SNAS_aggressive in SNAS/genotypes.py of the authors' code (SNAS-Series/SNAS-Series). The aggressive cell keeps
    # 'none' (the zero op) on six reduction edges; two of its reduction nodes are zeros. latkit builds them with the
    # DARTS op table; SNAS's own operations.py adds a BatchNorm after each pooling op (2 x channels parameters each).
    "SNAS_MILD": Genotype.make(
        normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("skip_connect", 0), ("dil_conv_3x3", 1),
                ("skip_connect", 0), ("skip_connect", 1), ("skip_connect", 0), ("sep_conv_3x3", 1)],
        reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("max_pool_3x3", 1), ("skip_connect", 2),
                ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0), ("dil_conv_5x5", 2)]),
    "SNAS_MODERATE": Genotype.make(
        normal=[("dil_conv_5x5", 0), ("skip_connect", 1), ("sep_conv_3x3", 0), ("skip_connect", 1),
                ("skip_connect", 0), ("skip_connect", 1), ("sep_conv_3x3", 0), ("dil_conv_5x5", 1)],
        reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("sep_conv_5x5", 0), ("dil_conv_5x5", 1),
                ("sep_conv_5x5", 0), ("sep_conv_5x5", 1), ("sep_conv_5x5", 0), ("sep_conv_5x5", 1)]),
    "SNAS_AGGRESSIVE": Genotype.make(
        normal=[("sep_conv_5x5", 0), ("skip_connect", 1), ("skip_connect", 0), ("skip_connect", 1),
                ("dil_conv_5x5", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_5x5", 1)],
        reduce=[("sep_conv_5x5", 0), ("none", 1), ("sep_conv_5x5", 0), ("none", 1),
                ("none", 1), ("none", 0), ("none", 1), ("none", 0)]),
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


def op_groups() -> np.ndarray:
    """The ``(224, 28)`` 0/1 matrix that sums an encoding into per-group op counts: per cell type and op, how often
    the op reads a cell input (node 0 or 1; strided in a reduction cell) and how often an intermediate node.
    Backends differ mostly in what each kind of op costs, which these 28 counts identify from a handful of rows
    where 224 per-edge costs cannot; being linear in the encoding, they keep the predictor differentiable."""
    from_input = [j < 2 for node in range(NODES) for j in range(node + 2)]
    m = np.zeros((2, EDGES_PER_CELL, len(PRIMITIVES), 2, 2, len(PRIMITIVES) - 1))
    for c in range(2):
        for e in range(EDGES_PER_CELL):
            for o in range(1, len(PRIMITIVES)):
                m[c, e, o, c, 0 if from_input[e] else 1, o - 1] = 1.0
    return m.reshape(ENCODING_SIZE, -1)


def edge_stride(reduction: bool, source: int) -> int:
    """The stride of an op on an edge from ``source`` (0, 1: the cell's inputs; 2..: its nodes): 2 where a
    reduction cell reads its inputs, else 1."""
    return 2 if reduction and source < 2 else 1


MERGE_KEYS: tuple[str, ...] = tuple(dict.fromkeys(k for s in (1, 2) for o in PRIMITIVES if (k := merge_key(o, s))))
STATES = NODES + 2  # the states a cell's edges read: its 2 inputs and its nodes (the last node is never read)


@functools.lru_cache(maxsize=None)
def _merge_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``key``: ``(2, 14, 8, K)``, 1 where an op on an edge has merge key k (per cell type: strides differ);
    ``readers``: ``(STATES, NODES)`` the edge each node reads a state through (padding where it cannot, with
    ``valid`` 0 there); read-only."""
    key = np.zeros((2, EDGES_PER_CELL, len(PRIMITIVES), len(MERGE_KEYS)))
    readers = np.zeros((STATES, NODES), dtype=np.int64)
    valid = np.zeros((STATES, NODES))
    for node in range(NODES):
        for j in range(node + 2):
            readers[j, node], valid[j, node] = edge_index(node, j), 1.0
            for c in range(2):
                for o, op in enumerate(PRIMITIVES):
                    k = merge_key(op, edge_stride(c == 1, j))
                    if k is not None:
                        key[c, edge_index(node, j), o, MERGE_KEYS.index(k)] = 1.0
    for table in (key, readers, valid):
        table.flags.writeable = False
    return key, readers, valid


def merged_ops(x: Any) -> Any:
    """Per cell type, source (the cell's inputs, then its intermediate nodes) and ``MERGE_KEYS`` key, how many ops a
    graph runtime's common-subexpression elimination merges away: over the states a cell reads, ``max(n - 1, 0)``
    for the ``n`` kept edges that read the state with ops of that key; ``(..., 2 x 2 x K)``. numpy for encodings,
    torch (differentiable) for the search's relaxed ones, where it is the expectation under the distribution that
    ``relaxed_encoding`` describes: each node reads a state through one edge, kept with an op of key k with
    probability ``p``, independently of the other nodes, so ``E max(n - 1, 0) = sum p - 1 + prod(1 - p)``; on a
    genotype's one-hot encoding that is ``max(n - 1, 0)`` exactly. onnxruntime merges these ops (its optimised
    graph has that many fewer), OpenVINO the pools (its ReLUs fuse into convolutions, where they cannot be
    counted), eager torch none (benchmarks/RESULTS.md, "Is latency additive in the ops?")."""
    key, readers, valid = _merge_tables()
    if isinstance(x, np.ndarray):
        xp, x = np, x.astype(np.float64)
    else:
        import torch

        xp = torch
        key, valid = (torch.tensor(t, dtype=x.dtype, device=x.device) for t in (key, valid))
        readers = torch.tensor(readers, device=x.device)
    cells = x.reshape(*x.shape[:-1], 2, EDGES_PER_CELL, len(PRIMITIVES))
    p = xp.einsum("...ceo,ceok->...cek", cells, key)  # (..., cell, edge, key)
    read = p[..., readers, :] * valid[:, :, None]  # (..., cell, state, node, key)
    expected = read.sum(-2) - 1.0 + (1.0 - read).prod(-2)  # (..., cell, state, key)
    inputs = expected[..., :2, :].sum(-2)
    nodes = expected[..., 2:, :].sum(-2)
    return xp.stack([inputs, nodes], -2).reshape(*x.shape[:-1], 2 * 2 * len(MERGE_KEYS))
