"""Every differentiable op through gradcheck in float64, from one table of cases."""

from __future__ import annotations

import numpy as np
import pytest
from engine_util import Const, check

from gradserve.engine import OPS

rng = np.random.default_rng(1234)


def r(*shape):
    return rng.standard_normal(shape)


def pos(*shape):
    return rng.uniform(0.5, 2.0, shape)


def unit(*shape):
    return rng.uniform(0.1, 0.9, shape)


def idx(high, *shape):
    return rng.integers(0, high, shape)


CASES: list = []


def case(op, *inputs, **attrs):
    label = f"{op}-{len(CASES)}"
    CASES.append(pytest.param(op, inputs, attrs, id=label))


# ---------------------------------------------------------------------------------------------
# binary arithmetic over broadcasting pairs, and Python-scalar operands

PAIRS = [((), (3,)), ((3,), ()), ((3,), (2, 3)), ((2, 3), (1, 3)), ((1, 3), (2, 1)),
         ((2, 3), (2, 3)), ((0, 3), (1, 3))]
for a, b in PAIRS:
    for op in ("add", "sub", "mul", "maximum", "minimum"):
        case(op, r(*a), r(*b))
    for op in ("mse_loss", "l1_loss"):  # "mean" of nothing is NaN: no finite differences there
        case(op, r(*a), r(*b), reduction="sum" if 0 in a + b else "mean")
    case("div", r(*a), pos(*b))
    case("pow", pos(*a), r(*b))
    case("where", r(*a) > 0, r(*a), r(*b))
case("add", r(2, 3), r(3), alpha=2.5)
case("sub", r(2, 3), r(3), alpha=-2)
for op in ("add", "sub", "mul", "rsub"):
    case(op, r(2, 3), other=1.5)
case("div", r(2, 3), other=-4.0)
case("div", r(2, 3), pos(2, 3), rounding_mode="floor")
for op in ("remainder", "fmod"):  # jumps where a / b is an integer: the data keeps away from them
    case(op, r(2, 3) * 3, pos(2, 3))
    case(op, r(2, 3) * 3, -pos(3))
    case(op, r(2, 3) * 3, other=0.7)
    case(op, r(3), other=-1.3)
case("pow", pos(2, 3), other=2.5)
case("pow", r(2, 3), other=3)
case("pow", r(2, 3), other=0)
case("rpow", r(2, 3), other=2.0)
case("rpow", r(4), other=0.5)

# ---------------------------------------------------------------------------------------------
# unary math, rounding (zero gradients), piecewise

for shape in [(2, 3), (), (0,)]:
    for op in ("exp", "expm1", "tanh", "sigmoid", "sin", "cos", "neg", "abs", "square", "erf",
               "sign", "floor", "ceil", "round", "trunc", "relu", "silu", "gelu", "elu",
               "leaky_relu", "softplus", "hardtanh"):
        case(op, r(*shape) * 1.5)
    for op in ("log", "log1p", "log2", "log10", "sqrt", "rsqrt", "reciprocal"):
        case(op, pos(*shape))
    case("tan", rng.uniform(-1, 1, shape))
case("gelu", r(3, 4) * 2, approximate="tanh")
case("leaky_relu", r(3, 4), negative_slope=0.2)
case("elu", r(3, 4), alpha=0.5, scale=1.5, input_scale=2.0)
case("softplus", r(3, 4) * 3, beta=2.0, threshold=1.0)
case("hardtanh", r(3, 4), min_val=-0.5, max_val=0.5)
case("clamp", r(3, 4), min=-0.5, max=0.5)
case("clamp", r(3, 4), min=-0.5)
case("clamp", r(3, 4), max=0.5)
case("clamp_tensor", r(3, 4), r(4) - 1, r(3, 1) + 1, has_min=True, has_max=True)
case("clamp_tensor", r(3, 4), r(3, 4), r(3, 4), has_min=True, has_max=True)  # min > max in places
case("clamp_tensor", r(3, 4), r(4), has_min=True)
case("clamp_tensor", r(3, 4), r(3, 1), has_max=True)
# a bound broadcasting x up: the x mask takes the output shape (conformance program 237)
case("clamp_tensor", r(), r(2), has_min=True)
case("clamp_tensor", r(3), r(2, 1), has_max=True)
for op, key in (("clamp_min", "min"), ("clamp_max", "max")):
    case(op, r(3, 4), **{key: 0.25})
    case(op, r(3, 4), r(4))

# ---------------------------------------------------------------------------------------------
# reductions

for dims in [{}, {"dim": 1}, {"dim": (0, 2)}, {"dim": -1, "keepdim": True}, {"dim": ()}]:
    for op in ("sum", "mean", "logsumexp", "amax", "amin", "norm"):
        case(op, r(2, 3, 4), **dims)
    case("var", r(2, 3, 4), **dims)
    case("std", r(2, 3, 4), **dims)
case("sum", r(0, 3), dim=0)
case("sum", r(), dim=0)
case("mean", r(0, 3), dim=1)
case("var", r(5), correction=0)
case("std", r(2, 5), dim=1, correction=2)
case("var", r(2, 5), dim=1, unbiased=False)
case("prod", r(2, 3, 4))
case("prod", r(2, 3, 4), dim=1, keepdim=True)
case("prod", np.array([[1.5, 0.0, 2.0], [0.0, 0.0, 3.0]]), dim=1)
case("prod", np.array([2.0, 0.0, -1.5]))
case("max", r(3, 4))
case("min", r(3, 4))
case("max_dim", r(3, 4), dim=1)
case("min_dim", r(3, 4), dim=0, keepdim=True)
case("max_dim", r(), dim=0)
for p in (1, 3, 0.5, float("inf"), float("-inf"), 0):
    case("norm", r(3, 4), p=p, dim=1)
case("norm", np.zeros(3), dim=0)
case("logsumexp", r(0, 3), dim=1)

# ---------------------------------------------------------------------------------------------
# shapes, views, casts, join/split

case("reshape", r(2, 3, 4), shape=(4, -1))
case("reshape", r(0, 3), shape=(3, 0))
case("flatten", r(2, 3, 4), start_dim=1)
case("squeeze", r(2, 1, 3, 1))
case("squeeze", r(2, 1, 3, 1), dim=(1, 0))
case("unsqueeze", r(2, 3), dim=-1)
case("permute", r(2, 3, 4), dims=(2, 0, 1))
case("transpose", r(2, 3, 4), dim0=0, dim1=2)
case("movedim", r(2, 3, 4), source=(0,), destination=(2,))
case("expand", r(3, 1), shape=(2, 3, 4))
case("expand", r(3), shape=(-1,))
case("flip", r(2, 3), dims=(0, 1))
case("cast", r(2, 3), dtype="float64")
case("clone", r(2, 3))
case("contiguous", r(2, 3).T)
case("cat", r(2, 3), r(1, 3), r(0, 3), dim=0)
case("cat", r(2, 3), r(2, 2), dim=-1)
case("cat", r(2, 3), r(0))
case("stack", r(2, 3), r(2, 3), dim=1)
case("split", r(5, 2), split_size=2, index=2)
case("split", r(5, 2), split_size=(1, 4), index=1)
case("chunk", r(2, 7), chunks=3, dim=1, index=1)
case("unbind", r(3, 2), dim=1, index=1)
case("repeat", r(2, 3), repeats=(2, 1, 3))
case("repeat", r(0, 3), repeats=(2, 1))
case("pad", r(2, 3), pad=(1, 2))
case("pad", r(2, 3, 4), pad=(-1, 2, 0, 1, 1, 0), value=0.5)

# ---------------------------------------------------------------------------------------------
# indexing

case("getitem", r(4, 3), index=(1,))
case("getitem", r(5, 3), index=(("slice", 1, None, 2), -1))
case("getitem", r(4, 3), index=(None, "...", None))
case("getitem", r(4, 3), np.array([0, 0, 2]), index=("tensor",))
case("getitem", r(3, 4, 5), np.array([1, 2]), index=(0, ("slice", None, None, None), "tensor"))
case("getitem", r(3, 4, 5), np.array([[0, 1], [2, 2]]), np.array([3, 0]),
     index=("tensor", ("slice", 1, 3, None), "tensor"))
case("getitem", r(3, 4), np.array([[True, False, True, True], [False] * 4, [True] * 4]),
     index=(("mask", 7),))
case("getitem", r(3, 4, 2), np.array([True, False, True]), index=(("mask", 2), "...", 1))
case("index_put", r(4, 3), r(3), np.array([0, 2]), index=("tensor",))
case("index_put", r(4, 3), r(2, 3), np.array([1, 1]), index=("tensor",), accumulate=True)
case("index_put", r(4, 3), r(1), index=(("slice", 1, 3, None), 0))
case("index_put", r(4, 3), np.array([0, 3]), index=("tensor",), value=2.0)
case("gather", r(3, 4), idx(4, 3, 5), dim=1)
case("gather", r(3, 4), idx(3, 2, 2), dim=0)
case("index_select", r(3, 4), np.array([2, 0, 2]), dim=0)
case("index_select", r(3, 4), np.array([], np.int64), dim=1)
case("masked_fill", r(3, 4), r(4) > 0, value=1.5)
case("masked_fill", r(3, 4), r(3, 4) > 0, r())
case("where", r(3, 4) > 0, r(3, 4), other=0.0)
case("where", r(3, 4) > 0, r(4), input=1.0)

# ---------------------------------------------------------------------------------------------
# matmul family

for a, b in [((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)), ((2, 3), (3, 4)), ((5, 2, 3), (3, 4)),
             ((5, 2, 3), (5, 3, 4)), ((2, 1, 2, 3), (4, 3, 2)), ((3,), (2, 3, 4)),
             ((2, 3), (2, 3, 4)), ((0, 3), (3, 2))]:
    case("matmul", r(*a), r(*b))
case("mm", r(2, 3), r(3, 4))
case("bmm", r(2, 2, 3), r(2, 3, 4))
case("mv", r(2, 3), r(3))
case("dot", r(3), r(3))
case("outer", r(3), r(4))
case("linear", r(4, 3), r(5, 3), r(5))
case("linear", r(2, 4, 3), r(5, 3))
case("addmm", r(4), r(2, 3), r(3, 4), beta=0.5, alpha=2.0)

# ---------------------------------------------------------------------------------------------
# softmax and losses

case("softmax", r(3, 4), dim=1)
case("softmax", r(3, 4), dim=0)
case("log_softmax", r(3, 4), dim=-1)
case("log_softmax", r(2, 3, 4), dim=1)
case("cross_entropy", r(4, 5), np.array([0, 4, 2, 2]))
case("cross_entropy", r(4, 5), np.array([0, -100, 2, 1]), reduction="sum")
case("cross_entropy", r(4, 5), np.array([0, 3, 2, 1]), reduction="none", ignore_index=3)
case("cross_entropy", r(4, 5), np.array([0, 3, 2, 1]), label_smoothing=0.2)
case("cross_entropy", r(4, 5), np.array([0, 3, -100, 1]), Const(pos(5)), label_smoothing=0.1)
case("cross_entropy", r(4, 5), np.array([0, 3, 2, 1]), Const(pos(5)), reduction="mean")
case("cross_entropy", r(2, 3, 4), np.array([[0, 1, 2, 0], [2, 2, 1, 0]]))
case("cross_entropy", r(5), np.array(3))
case("cross_entropy", r(4, 5), Const(np.full((4, 5), 0.2)))
case("cross_entropy", r(4, 5), unit(4, 5), label_smoothing=0.3, reduction="sum")
case("cross_entropy", r(4, 5), unit(4, 5), Const(pos(5)), reduction="none")
case("nll_loss", r(4, 5), np.array([0, 4, -100, 2]))
case("nll_loss", r(4, 5), np.array([0, 4, 1, 2]), Const(pos(5)), reduction="sum")
case("mse_loss", r(3, 4), r(3, 4), reduction="none")
case("l1_loss", r(3, 4), r(4), reduction="sum")
case("smooth_l1_loss", r(3, 4) * 2, r(3, 4))
case("smooth_l1_loss", r(3, 4), r(4), beta=0.5, reduction="none")
case("binary_cross_entropy", unit(3, 4), unit(3, 4))
case("binary_cross_entropy", unit(3, 4), unit(3, 4), Const(pos(4)), reduction="none")
case("binary_cross_entropy_with_logits", r(3, 4), unit(3, 4))
case("binary_cross_entropy_with_logits", r(3, 4), unit(3, 4), Const(pos(4)), reduction="sum")
case("binary_cross_entropy_with_logits", r(3, 4), unit(3, 4), Const(pos(3, 4)), Const(pos(4)),
     pos_weight=True)
case("binary_cross_entropy_with_logits", r(3, 4), unit(3, 4), Const(pos(4)), pos_weight=True,
     reduction="none")
case("dropout", r(4, 5), p=0.3, seed=7)
case("dropout", r(4, 5), r(4, 5) > 0, p=0.5)
case("dropout", r(4, 5), p=1.0, seed=1)


@pytest.mark.parametrize("op, inputs, attrs", CASES)
def test_gradcheck(op, inputs, attrs):
    assert check(op, inputs, attrs)


def test_every_differentiable_op_has_a_case():
    covered = {p.values[0] for p in CASES}
    missing = sorted(name for name, op in OPS.items() if op.differentiable and name not in covered)
    assert missing == []
