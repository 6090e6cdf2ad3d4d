"""Latency-aware DARTS search: supernet, genotype derivation, penalty, architect, data, search loop, training.

Everything is tiny (3 cells, 4 channels, 8x8 inputs) so each test takes a few seconds at most on a CPU.
The latency predictor is a hand-written linear stand-in whose numbers can be worked out by hand.
"""
from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from latkit.errors import LatkitError
from latkit.network import NetConfig, Network, count_params
from latkit.search.architect import Architect
from latkit.search.data import _SafeUnpickler, load_data, split_half
from latkit.search.penalty import LatencyPenalty
from latkit.search.searcher import run_search
from latkit.search.supernet import SuperNet, derive_genotype
from latkit.search.train import train_genotype
from latkit.space import EDGES_PER_CELL, ENCODING_SIZE, PRIMITIVES, PUBLISHED, Genotype, edge_index, encode

# ms per unit weight of each op on every edge of both cells (op order of PRIMITIVES)
COSTS = {"none": 0.0, "max_pool_3x3": 1.0, "avg_pool_3x3": 1.0, "skip_connect": 0.5, "sep_conv_3x3": 2.0,
         "sep_conv_5x5": 3.0, "dil_conv_3x3": 1.5, "dil_conv_5x5": 2.5}
BIAS = 1.0
# DARTS_V2 one-hot: normal 5 sep3 + 2 skip + 1 dil3 = 12.5; reduce 5 max_pool + 3 skip = 6.5; + bias = 20
REFERENCE = 20.0
# uniform softmax (alphas all zero), relaxed: each node keeps 2 of its edges, each kept edge's op uniform over the 7
# non-'none' ops: 8 nodes * 2 edges * (11.5 / 7) + bias
UNIFORM = 16 * 11.5 / 7 + 1.0
TINY = dict(channels=4, layers=3, classes=10, in_channels=1)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class LinearStandIn:
    """A differentiable predictor stand-in: latency = bias + sum over (edge, op) of weight * cost."""

    kind = "linear-stand-in"
    differentiable = True

    def __init__(self, costs: dict[str, float] = COSTS, bias: float = BIAS):
        row = torch.tensor([costs[op] for op in PRIMITIVES], dtype=torch.float32)
        self.weight = row.repeat(2 * EDGES_PER_CELL)
        self.bias = bias
        self.calls = 0
        self.meta = {"backend": "stand-in", "device": "cpu"}

    def torch_ms(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x @ self.weight + self.bias

    def predict_ms(self, x: np.ndarray) -> np.ndarray:
        return self.torch_ms(torch.as_tensor(np.asarray(x, dtype=np.float32))).numpy()


class NotDifferentiable:
    kind = "xgboost"
    differentiable = False
    meta: dict = {}


def uniform_weights() -> tuple[torch.Tensor, torch.Tensor]:
    """softmax of all-zero alphas: 1/8 on every op of every edge."""
    w = F.softmax(torch.zeros(2, EDGES_PER_CELL, len(PRIMITIVES)), dim=-1)
    return w[0], w[1]


# --- supernet ---------------------------------------------------------------------------------------------------

def test_supernet_forward_shape_and_alphas() -> None:
    model = SuperNet(**TINY)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    assert [tuple(a.shape) for a in model.arch_parameters()] == [(14, 8), (14, 8)]
    alpha_ids = {id(a) for a in model.arch_parameters()}
    assert all(id(p) not in alpha_ids for p in model.weights())
    assert len(model.weights()) + 2 == len(list(model.parameters()))
    assert [i for i, c in enumerate(model.cells) if c.reduction] == [1, 2]


def test_supernet_new_copies_alphas() -> None:
    model = SuperNet(**TINY)
    with torch.no_grad():
        model.alphas_normal.add_(1.0)
    copy = model.new()
    assert torch.equal(copy.alphas_normal, model.alphas_normal)
    assert copy.alphas_normal is not model.alphas_normal


def test_arch_weights_encode_to_predictor_layout() -> None:
    model = SuperNet(**TINY)
    x = encode(model.arch_weights())
    assert x.shape == (ENCODING_SIZE,)
    assert torch.allclose(x.reshape(2 * EDGES_PER_CELL, len(PRIMITIVES)).sum(1), torch.ones(28))
    assert x.requires_grad


# --- genotype derivation ----------------------------------------------------------------------------------------

def _weights(choices: dict[tuple[int, int], tuple[str, float]], none_on: dict[tuple[int, int], float] = {}
             ) -> np.ndarray:
    """(14, 8) weights: 0.01 everywhere, ``choices[(node, input)] = (op, w)``, ``none_on[(node, input)] = w``."""
    w = np.full((EDGES_PER_CELL, len(PRIMITIVES)), 0.01, dtype=np.float32)
    for (node, j), (op, value) in choices.items():
        w[edge_index(node, j), PRIMITIVES.index(op)] = value
    for (node, j), value in none_on.items():
        w[edge_index(node, j), 0] = value
    return w


def test_derive_genotype_hand_set_weights() -> None:
    normal = _weights({(0, 0): ("sep_conv_3x3", 0.5), (0, 1): ("skip_connect", 0.4),
                       (1, 2): ("dil_conv_5x5", 0.3), (1, 0): ("max_pool_3x3", 0.2), (1, 1): ("sep_conv_5x5", 0.1),
                       (2, 3): ("avg_pool_3x3", 0.6), (2, 1): ("sep_conv_3x3", 0.5),
                       (3, 4): ("dil_conv_3x3", 0.7), (3, 0): ("skip_connect", 0.3)},
                      # 'none' dominates edge (1, 1) and (3, 2) but must be ignored; the edges stay weak
                      none_on={(1, 1): 0.9, (3, 2): 0.95})
    reduce = _weights({(0, 1): ("max_pool_3x3", 0.9), (0, 0): ("avg_pool_3x3", 0.2),
                       (1, 0): ("skip_connect", 0.4), (1, 2): ("sep_conv_3x3", 0.3),
                       (2, 2): ("sep_conv_5x5", 0.4), (2, 0): ("max_pool_3x3", 0.35),
                       (3, 1): ("dil_conv_3x3", 0.5), (3, 3): ("skip_connect", 0.45)},
                      none_on={(3, 0): 0.99})
    g = derive_genotype(normal, reduce)
    assert g == Genotype.make(
        normal=[("sep_conv_3x3", 0), ("skip_connect", 1), ("dil_conv_5x5", 2), ("max_pool_3x3", 0),
                ("avg_pool_3x3", 3), ("sep_conv_3x3", 1), ("dil_conv_3x3", 4), ("skip_connect", 0)],
        reduce=[("max_pool_3x3", 1), ("avg_pool_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 2),
                ("sep_conv_5x5", 2), ("max_pool_3x3", 0), ("dil_conv_3x3", 1), ("skip_connect", 3)])


def test_derive_genotype_ignores_none_within_an_edge() -> None:
    # every edge: 'none' is the largest weight, sep_conv_5x5 second; node inputs then tie and keep the lowest
    w = np.full((EDGES_PER_CELL, len(PRIMITIVES)), 0.05, dtype=np.float32)
    w[:, PRIMITIVES.index("none")] = 0.6
    w[:, PRIMITIVES.index("sep_conv_5x5")] = 0.1
    g = derive_genotype(w, w)
    assert all(op == "sep_conv_5x5" for op, _ in g.normal + g.reduce)
    assert [j for _, j in g.normal] == [0, 1] * 4


def test_supernet_genotype_matches_derivation() -> None:
    model = SuperNet(**TINY)
    w_n, w_r = (w.detach().numpy() for w in model.arch_weights())
    assert model.genotype() == derive_genotype(w_n, w_r)


# --- latency penalty --------------------------------------------------------------------------------------------

def test_reference_is_darts_v2_latency() -> None:
    pred = LinearStandIn()
    assert float(pred.torch_ms(torch.from_numpy(encode(PUBLISHED["DARTS_V2"])))) == pytest.approx(REFERENCE)
    assert LatencyPenalty(pred, 1.0).reference_ms == pytest.approx(REFERENCE)


@pytest.mark.parametrize("form, lam, kwargs, expected", [
    ("additive", 0.5, {}, 1.5 + 0.5 * UNIFORM / REFERENCE),
    ("additive", 2.0, {"reference_ms": 10.0}, 1.5 + 2.0 * UNIFORM / 10.0),
    ("relative", 0.5, {"target_ms": 50.0}, 1.5 + 0.5 * abs(UNIFORM / 50.0 - 1)),
    ("relative", 1.0, {"target_ms": 30.0}, 1.5 + 1.0 * abs(UNIFORM / 30.0 - 1)),
    ("log", 2.0, {}, 1.5 * (UNIFORM / REFERENCE) ** 2),
])
def test_penalty_forms_by_hand(form: str, lam: float, kwargs: dict, expected: float) -> None:
    penalty = LatencyPenalty(LinearStandIn(), lam, form, **kwargs)
    loss, details = penalty(torch.tensor(1.5), uniform_weights())
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert details["latency_ms"] == pytest.approx(UNIFORM, rel=1e-5)
    assert details["penalty"] == pytest.approx(expected - 1.5, rel=1e-4)


def test_lambda_zero_is_plain_cross_entropy_and_never_calls_predictor() -> None:
    pred = LinearStandIn()
    ce = torch.tensor(0.7, requires_grad=True)
    for form in ("additive", "relative", "log"):
        loss, details = LatencyPenalty(pred, 0.0, form)(ce, uniform_weights())
        assert loss is ce
        assert details["penalty"] == 0.0
    assert pred.calls == 0
    assert LatencyPenalty(NotDifferentiable(), 0.0)(ce, uniform_weights())[0] is ce


def test_penalty_errors() -> None:
    with pytest.raises(LatkitError, match="xgboost predictor is not differentiable"):
        LatencyPenalty(NotDifferentiable(), 0.1)
    with pytest.raises(LatkitError, match="unknown latency penalty form 'square'"):
        LatencyPenalty(LinearStandIn(), 0.1, form="square")
    with pytest.raises(LatkitError, match="target latency"):
        LatencyPenalty(LinearStandIn(), 0.1, form="relative")
    with pytest.raises(LatkitError, match="lambda must be a finite number >= 0"):
        LatencyPenalty(LinearStandIn(), -1.0)


POOL_HEAVY = dict(COSTS, max_pool_3x3=4.0, avg_pool_3x3=4.0, sep_conv_3x3=0.5, sep_conv_5x5=0.5)  # another runtime


@pytest.mark.parametrize("combine, form", [("sum", "additive"), ("worst", "additive"), ("sum", "log"),
                                           ("worst", "log")])
def test_several_targets_combine_their_ratios(combine: str, form: str) -> None:
    first, second = LinearStandIn(), LinearStandIn(POOL_HEAVY, bias=3.0)
    second.meta = {"backend": "other", "device": "cpu"}
    ratios = []
    for pred in (first, second):  # each target's relaxed latency over its own DARTS_V2 latency
        ref = float(pred.torch_ms(torch.from_numpy(encode(PUBLISHED["DARTS_V2"]))))
        ratios.append(float(LatencyPenalty(pred, 1.0).latency_ms(uniform_weights())) / ref)
    assert ratios[0] == pytest.approx(UNIFORM / REFERENCE) and abs(ratios[0] - ratios[1]) > 0.1
    combined = sum(ratios) if combine == "sum" else max(ratios)
    penalty = LatencyPenalty([first, second], 0.5, form, combine=combine)
    loss, details = penalty(torch.tensor(1.5), uniform_weights())
    expected = 1.5 + 0.5 * combined if form == "additive" else 1.5 * combined ** 0.5
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert details["latency_ms"] == pytest.approx(UNIFORM, rel=1e-5)  # the first target's, as with one
    settings = penalty.settings()
    assert settings["combine"] == combine and [t["backend"] for t in settings["targets"]] == ["stand-in", "other"]
    assert "targets" not in LatencyPenalty(first, 0.5, form).settings()  # one target: a checkpoint as before


def test_worst_target_gets_the_whole_gradient() -> None:
    first, second = LinearStandIn(), LinearStandIn(POOL_HEAVY, bias=3.0)
    worst_alone = None
    for preds in ([first, second], [first], [second]):
        torch.manual_seed(0)  # the same alphas each time
        model = SuperNet(**TINY)
        penalty = LatencyPenalty(preds, 1.0, combine="worst")
        penalty(torch.tensor(0.0), model.arch_weights())[0].backward()
        grads = torch.cat([a.grad.flatten() for a in model.arch_parameters()])
        ratio = float(penalty.ratio(model.arch_weights())[0].detach())
        if len(preds) == 2:
            both, both_ratio = grads, ratio
        elif worst_alone is None or ratio > worst_ratio:
            worst_alone, worst_ratio = grads, ratio
    assert both_ratio == pytest.approx(worst_ratio)
    assert torch.allclose(both, worst_alone)


def test_several_targets_refuse_a_single_target_form() -> None:
    with pytest.raises(LatkitError, match="several targets"):
        LatencyPenalty([LinearStandIn(), LinearStandIn()], 0.1, "relative", target_ms=10.0)
    with pytest.raises(LatkitError, match="several targets"):
        LatencyPenalty([LinearStandIn(), LinearStandIn()], 0.1, reference_ms=10.0)
    with pytest.raises(LatkitError, match="unknown way to combine"):
        LatencyPenalty([LinearStandIn(), LinearStandIn()], 0.1, combine="mean")


@pytest.mark.parametrize("form, kwargs", [("additive", {}), ("relative", {"target_ms": 20.0}), ("log", {})])
def test_penalty_gradient_flows_into_alphas(form: str, kwargs: dict) -> None:
    model = SuperNet(**TINY)
    loss, _ = LatencyPenalty(LinearStandIn(), 1.0, form, **kwargs)(torch.tensor(1.0), model.arch_weights())
    loss.backward()
    for alpha in model.arch_parameters():
        assert alpha.grad is not None and alpha.grad.abs().sum() > 0
    sep5 = PRIMITIVES.index("sep_conv_5x5")  # the dearest op: descent lowers its alpha on every edge
    assert (model.alphas_normal.grad[:, sep5] > 0).all()


# --- architect ----------------------------------------------------------------------------------------------------

def _exact_unrolled_grads(model: SuperNet, penalty: LatencyPenalty, x, y, xv, yv, eta: float, momentum: float,
                          weight_decay: float, w_opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    """d/d alpha of L_val(w'(alpha), alpha), w' = w - eta (momentum buffer + dL_train/dw + wd w), by an exact
    double backward through the virtual step (torch.func.functional_call)."""
    from torch.func import functional_call

    names = [n for n, p in model.named_parameters() if not n.startswith("alphas_")]
    weights = [p for n, p in model.named_parameters() if not n.startswith("alphas_")]
    alphas = model.arch_parameters()
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), weights, create_graph=True)
    unrolled = {}
    for name, w, g in zip(names, weights, grads):
        buf = w_opt.state.get(w, {}).get("momentum_buffer")
        moment = torch.zeros_like(w) if buf is None else buf * momentum
        unrolled[name] = w - eta * (moment + g + weight_decay * w)
    unrolled.update(alphas_normal=model.alphas_normal, alphas_reduce=model.alphas_reduce)
    loss = penalty(F.cross_entropy(functional_call(model, unrolled, (xv,)), yv), model.arch_weights())[0]
    return list(torch.autograd.grad(loss, alphas))


class _SmoothReLU(torch.nn.SiLU):
    """ReLU's smooth stand-in, so that a finite-difference Hessian-vector product has a limit to converge to."""

    def __init__(self, inplace: bool = False):
        super().__init__()


def test_second_order_gradient_matches_an_exact_double_backward(monkeypatch: pytest.MonkeyPatch) -> None:
    # ReLU networks are piecewise linear: a finite difference across a kink is not a derivative (here DARTS'
    # radius 0.01 is off by 3x, and ReLU at 1e-6 still crosses kinks). On a smooth supernet in float64 with a
    # small radius, the architect's finite-difference gradient must converge to the exact one.
    monkeypatch.setattr(torch.nn, "ReLU", _SmoothReLU)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        penalty = LatencyPenalty(LinearStandIn(), 0.1)  # small: the cross-entropy's second-order term must show
        model = SuperNet(**TINY)
        objective = lambda net, x, y: penalty(F.cross_entropy(net(x), y), net.arch_weights())[0]  # noqa: E731
        architect = Architect(model, objective, network_momentum=0.9, network_weight_decay=3e-4, r=1e-6)
        w_opt = torch.optim.SGD(model.weights(), lr=0.025, momentum=0.9, weight_decay=3e-4)
        x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
        xv, yv = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
        # a real weight step first, so the momentum buffers the virtual step reads are non-zero
        F.cross_entropy(model(x), y).backward()
        w_opt.step()
        eta = 0.5  # a large virtual step makes the implicit (second-order) part of the gradient large
        exact = _exact_unrolled_grads(model, penalty, x, y, xv, yv, eta, 0.9, 3e-4, w_opt)
        weights_before = [p.detach().clone() for p in model.weights()]
        _, approx = architect._unrolled_grads(x, y, xv, yv, eta, w_opt)
        # the finite difference perturbs the weights and must put them back
        assert all(torch.allclose(p, q, rtol=0, atol=1e-12) for p, q in zip(model.weights(), weights_before))
        unrolled = architect._unrolled
        first = torch.autograd.grad(objective(unrolled, xv, yv), unrolled.arch_parameters())
    finally:
        torch.set_default_dtype(default)
    for e, a, f in zip(exact, approx, first):
        implicit_exact, implicit_approx = e - f, a - f  # the Hessian-vector part alone
        assert implicit_exact.norm() > 0.1 * e.norm()  # big enough that a wrong term would show
        assert (implicit_approx - implicit_exact).norm() < 1e-5 * implicit_exact.norm()


def test_architect_step_penalises_expensive_op() -> None:
    torch.manual_seed(0)
    costs = dict(COSTS, sep_conv_5x5=1000.0)
    penalty = LatencyPenalty(LinearStandIn(costs), 50.0)
    model = SuperNet(**TINY)

    def objective(net: SuperNet, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return penalty(F.cross_entropy(net(x), y), net.arch_weights())[0]

    architect = Architect(model, objective)
    w_opt = torch.optim.SGD(model.weights(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    xv, yv = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    before = [w.detach().clone() for w in model.arch_weights()]
    weights_before = [p.detach().clone() for p in model.weights()]
    for _ in range(3):
        architect.step(x, y, xv, yv, 0.025, w_opt, order=1)
    after = model.arch_weights()
    sep5 = PRIMITIVES.index("sep_conv_5x5")
    for b, a in zip(before, after):
        assert not torch.equal(b, a)
        assert (a[:, sep5] < b[:, sep5]).all()
    for p, q in zip(model.weights(), weights_before):  # an architecture step moves the alphas only
        assert torch.equal(p, q)


def test_architect_rejects_unknown_order() -> None:
    model = SuperNet(**TINY)
    architect = Architect(model, lambda net, x, y: F.cross_entropy(net(x), y))
    x, y = torch.randn(2, 1, 8, 8), torch.randint(0, 10, (2,))
    with pytest.raises(LatkitError, match="order must be 1"):
        architect.step(x, y, x, y, 0.025, torch.optim.SGD(model.weights(), lr=0.1), order=3)


# --- data -------------------------------------------------------------------------------------------------------

def test_digits_shapes_and_classes() -> None:
    train, test, classes, channels = load_data("digits", resolution=8, channels=3)
    assert classes == 10 and channels == 3
    assert train.tensors[0].shape[1:] == (3, 8, 8) and train.tensors[0].dtype == torch.float32
    assert len(train) + len(test) == 1797 and len(test) == pytest.approx(1797 / 5, abs=10)
    assert set(test.tensors[1].tolist()) == set(range(10))
    train16, _, _, c1 = load_data("digits", channels=1, limit=100)
    assert train16.tensors[0].shape == (100, 1, 16, 16) and c1 == 1
    a, b = split_half(train16, seed=0)
    assert len(a) == len(b) == 50
    assert not set(a.tensors[1].tolist()) - set(range(10))


def test_synthetic_data() -> None:
    train, test, classes, channels = load_data("synthetic", resolution=8, channels=2, limit=64)
    assert train.tensors[0].shape == (64, 2, 8, 8) and len(test) == 64 and classes == 10 and channels == 2


def test_data_errors(tmp_path) -> None:
    with pytest.raises(LatkitError, match="unknown data set"):
        load_data("mnist")
    with pytest.raises(LatkitError, match="does not exist"):
        load_data("cifar10", tmp_path / "nowhere")
    with pytest.raises(LatkitError, match=r"expected data_batch_1..5 and test_batch in"):
        load_data("cifar10", tmp_path)
    with pytest.raises(LatkitError, match="multiple of 4"):
        load_data("digits", resolution=10)


def _fake_cifar(folder, n: int = 6) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        doc = {b"batch_label": b"fake", b"labels": [int(v) for v in rng.integers(0, 10, n)],
               b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"x.png"] * n}
        with open(folder / name, "wb") as f:
            pickle.dump(doc, f, protocol=4)


def test_fake_cifar_folder_read_by_safe_unpickler(tmp_path) -> None:
    _fake_cifar(tmp_path / "cifar-10-batches-py")
    for where in (tmp_path, tmp_path / "cifar-10-batches-py"):  # the folder or its parent
        train, test, classes, channels = load_data("cifar10", where, resolution=8)
        assert train.tensors[0].shape == (30, 3, 8, 8) and len(test) == 6 and channels == 3
    assert _SafeUnpickler.find_class(None, "numpy.core.multiarray", "_reconstruct") is not None  # real files' name


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_malicious_pickle_is_rejected(tmp_path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    _fake_cifar(folder)
    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({b"data": _Evil(), b"labels": []}, f)
    with open(folder / "data_batch_3", "rb") as f:
        with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
            _SafeUnpickler(f, encoding="bytes").load()
    with pytest.raises(LatkitError, match="data_batch_3 is not a CIFAR-10 batch: refusing to load"):
        load_data("cifar10", tmp_path)


# --- search loop and training -----------------------------------------------------------------------------------

SEARCH = dict(data="digits", resolution=8, limit=128, batch_size=32, layers=3, channels=4, seed=0)


def test_tiny_search_checkpoints_and_resumes(tmp_path) -> None:
    lines: list[str] = []
    pred = LinearStandIn()
    first = run_search(tmp_path, predictor=pred, lam=0.5, epochs=1, log=lines.append, **SEARCH)
    assert (tmp_path / "checkpoint.safetensors").exists()
    doc = json.loads((tmp_path / "checkpoint.json").read_text())
    assert doc["epoch"] == 1 and len(first["history"]) == 1
    assert len(lines) == 1 and lines[0].startswith("epoch 1/1") and "latency" in lines[0]
    g = Genotype.from_dict(first["genotype_json"])
    assert str(g) == first["genotype"]
    assert first["latency_ms"] == pytest.approx(float(pred.predict_ms(encode(g)[None])[0]))

    lines.clear()
    second = run_search(tmp_path, predictor=pred, lam=0.5, epochs=2, log=lines.append, **SEARCH)
    assert [row["epoch"] for row in second["history"]] == [1, 2]
    assert second["history"][0] == first["history"][0]
    assert lines[0].startswith("resuming") and lines[1].startswith("epoch 2/2")

    with pytest.raises(LatkitError, match="other settings"):
        run_search(tmp_path, predictor=pred, lam=0.9, epochs=3, **SEARCH)


def test_resumed_search_repeats_uninterrupted_one(tmp_path) -> None:
    kw = dict(SEARCH, limit=64, predictor=LinearStandIn(), lam=1.0)
    straight = run_search(tmp_path / "a", epochs=2, **kw)
    run_search(tmp_path / "b", epochs=1, **kw)
    resumed = run_search(tmp_path / "b", epochs=2, **kw)
    assert resumed["alphas"] == straight["alphas"]
    assert resumed["genotype"] == straight["genotype"]


def test_tiny_second_order_search_without_predictor(tmp_path) -> None:
    result = run_search(tmp_path, epochs=1, order=2, **dict(SEARCH, limit=64))
    assert result["latency_ms"] is None and len(result["history"]) == 1
    Genotype.from_dict(result["genotype_json"])


def test_tiny_train() -> None:
    lines: list[str] = []
    result = train_genotype(PUBLISHED["DARTS_V2"], data="digits", epochs=5, batch_size=32, layers=3, channels=4,
                            resolution=8, limit=256, log=lines.append)
    assert result["test_accuracy"] > 0.5  # ten classes: chance is 0.1; this recipe reached 0.78 when written
    assert result["test_accuracy"] == result["history"][-1]["test_acc"] and result["epochs"] == 5
    assert result["params"] == count_params(Network(PUBLISHED["DARTS_V2"], NetConfig(**result["config"])))
    assert len(result["history"]) == 5 and lines[0].startswith("epoch 1/5")


def test_max_skip_keeps_the_strongest_skips_and_rederives_the_rest() -> None:
    from latkit.search.searcher import cell_report, collapse_warning

    skip, sep = PRIMITIVES.index("skip_connect"), PRIMITIVES.index("sep_conv_3x3")
    w = np.full((EDGES_PER_CELL, len(PRIMITIVES)), 0.01)
    w[:, sep] = 0.2  # every edge's second choice
    for e, strength in zip(range(EDGES_PER_CELL), np.linspace(0.9, 0.3, EDGES_PER_CELL)):
        w[e, skip] = strength  # skip wins everywhere, most strongly on the early edges
    plain = derive_genotype(w, w)
    assert cell_report(plain)["normal"] == {"parameter_free": 8, "skip_connect": 8}
    assert "--max-skip 2" in collapse_warning(plain)
    limited = derive_genotype(w, w, max_skip=2)
    normal = cell_report(limited)["normal"]
    assert normal["skip_connect"] == 2 and normal["parameter_free"] == 2
    kept = [edge_index(k // 2, j) for k, (op, j) in enumerate(limited.normal) if op == "skip_connect"]
    assert sorted(kept) == [0, 1]  # the two strongest skip weights
    assert limited.reduce == plain.reduce  # the rule is for the normal cell only
    assert collapse_warning(limited) is None
    assert derive_genotype(w, w, max_skip=8) == plain
    with pytest.raises(ValueError, match="max_skip"):
        derive_genotype(w, w, max_skip=-1)


def test_max_free_bounds_pools_too_keeping_the_strongest_parameter_free_ops() -> None:
    from latkit.search.searcher import cell_report

    skip, pool, sep = (PRIMITIVES.index(n) for n in ("skip_connect", "max_pool_3x3", "sep_conv_3x3"))
    w = np.full((EDGES_PER_CELL, len(PRIMITIVES)), 0.01)
    w[:, sep] = 0.2
    for e, strength in zip(range(EDGES_PER_CELL), np.linspace(0.9, 0.3, EDGES_PER_CELL)):
        w[e, skip] = strength
        w[e, pool] = strength - 0.05  # a pool is every edge's runner-up: the skip rule alone lets it in
    skips_only = cell_report(derive_genotype(w, w, max_skip=2))["normal"]
    assert skips_only == {"parameter_free": 8, "skip_connect": 2}  # the collapse moves to the pools
    bounded = derive_genotype(w, w, max_skip=2, max_free=2)
    assert cell_report(bounded)["normal"] == {"parameter_free": 2, "skip_connect": 2}
    kept = sorted(edge_index(k // 2, j) for k, (op, j) in enumerate(bounded.normal) if op != "sep_conv_3x3")
    assert kept == [0, 1]  # the two strongest parameter-free weights (edges 0 and 1's skips)
    assert cell_report(derive_genotype(w, w, max_free=0))["normal"]["parameter_free"] == 0
    assert derive_genotype(w, w, max_free=8) == derive_genotype(w, w)
    with pytest.raises(ValueError, match="max_free"):
        derive_genotype(w, w, max_free=-1)


def test_beta_regulariser_is_beta_darts_logsumexp_and_its_gradient_is_the_softmax() -> None:
    from latkit.search.searcher import beta_regulariser

    a = torch.randn(EDGES_PER_CELL, len(PRIMITIVES), requires_grad=True)
    b = torch.zeros(EDGES_PER_CELL, len(PRIMITIVES), requires_grad=True)
    loss = beta_regulariser([a, b])
    expected = torch.log(torch.exp(a).sum(-1)).mean() + np.log(len(PRIMITIVES))
    assert torch.allclose(loss, expected)
    loss.backward()
    assert torch.allclose(a.grad, a.softmax(-1) / EDGES_PER_CELL)
    assert torch.allclose(b.grad, torch.full_like(b, 1 / (len(PRIMITIVES) * EDGES_PER_CELL)))
