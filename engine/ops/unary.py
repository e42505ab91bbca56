"""Unary math: exp/log family, trigonometry, roots, rounding. One input, same shape out.

Ops whose result is always floating (exp, log, sqrt, sin, ...) turn integer and bool inputs into
float32, as PyTorch does. Rounding ops (sign, floor, ceil, round, trunc) keep the dtype and have
zero gradients, not None.
"""

from __future__ import annotations

import math

import numpy as np

from ..dtypes import DEFAULT_FLOAT, result_type
from ..errors import DTypeError
from ..graph import TensorSpec
from ..registry import INPUTS, OUTPUT, attr, register
from .elementwise import float_unary_infer, same_infer

LN2, LN10 = math.log(2.0), math.log(10.0)


def as_float(x: np.ndarray) -> np.ndarray:
    """Compute integer inputs in the default float dtype (not NumPy's float64)."""
    return x if x.dtype.kind == "f" else x.astype(DEFAULT_FLOAT)


def _zeros(g, xs, out, attrs):
    return (np.zeros(g.shape, g.dtype),)


def numeric_infer(specs, attrs):
    if specs[0].dtype.kind == "b":
        raise DTypeError("operation is not supported for bool tensors")
    return specs[0]


def square_infer(specs, attrs):
    return TensorSpec(specs[0].shape, result_type(specs, [2]))


def _unary(name, fn, backward, *, saves, infer=float_unary_infer):
    """Register `name` computing fn(x) in the output's float dtype."""
    register(name, infer=infer, saves=saves, backward=backward,
             forward=lambda xs, attrs: fn(as_float(xs[0])))


# ---------------------------------------------------------------------------------------------
# exp / log family

_unary("exp", np.exp, lambda g, xs, out, attrs: (g * out,), saves=(OUTPUT,))
_unary("expm1", np.expm1, lambda g, xs, out, attrs: (g * (out + 1),), saves=(OUTPUT,))
_unary("log", np.log, lambda g, xs, out, attrs: (g / xs[0],), saves=(INPUTS,))
_unary("log1p", np.log1p, lambda g, xs, out, attrs: (g / (xs[0] + 1),), saves=(INPUTS,))
_unary("log2", np.log2, lambda g, xs, out, attrs: (g / (xs[0] * LN2),), saves=(INPUTS,))
_unary("log10", np.log10, lambda g, xs, out, attrs: (g / (xs[0] * LN10),), saves=(INPUTS,))


# ---------------------------------------------------------------------------------------------
# roots and reciprocals

_unary("sqrt", np.sqrt, lambda g, xs, out, attrs: (g / (2 * out),), saves=(OUTPUT,))
_unary("rsqrt", lambda x: 1 / np.sqrt(x), lambda g, xs, out, attrs: (-0.5 * g * out ** 3,),
       saves=(OUTPUT,))
_unary("reciprocal", np.reciprocal, lambda g, xs, out, attrs: (-g * out * out,), saves=(OUTPUT,))


def _square(xs, attrs):
    x = xs[0]
    return np.square(x if x.dtype.kind != "b" else x.astype(np.int64))


register("square", infer=square_infer, saves=(INPUTS,), forward=_square,
         backward=lambda g, xs, out, attrs: (2 * g * xs[0],))


# ---------------------------------------------------------------------------------------------
# trigonometric and hyperbolic

_unary("sin", np.sin, lambda g, xs, out, attrs: (g * np.cos(xs[0]),), saves=(INPUTS,))
_unary("cos", np.cos, lambda g, xs, out, attrs: (-g * np.sin(xs[0]),), saves=(INPUTS,))
_unary("tan", np.tan, lambda g, xs, out, attrs: (g * (1 + out * out),), saves=(OUTPUT,))
_unary("tanh", np.tanh, lambda g, xs, out, attrs: (g * (1 - out * out),), saves=(OUTPUT,))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) without overflow warnings for large |x|."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


_unary("sigmoid", sigmoid, lambda g, xs, out, attrs: (g * out * (1 - out),), saves=(OUTPUT,))


# ---------------------------------------------------------------------------------------------
# sign, magnitude, rounding

register("neg", infer=numeric_infer, saves=(), forward=lambda xs, attrs: np.negative(xs[0]),
         backward=lambda g, xs, out, attrs: (-g,))
register("abs", infer=numeric_infer, saves=(INPUTS,), forward=lambda xs, attrs: np.abs(xs[0]),
         backward=lambda g, xs, out, attrs: (g * np.sign(xs[0]),))
register("sign", infer=same_infer, saves=(), backward=_zeros,
         forward=lambda xs, attrs: np.sign(xs[0]) if xs[0].dtype.kind != "b" else xs[0].copy())


def _round(xs, attrs):
    """Half to even, like torch.round; `decimals` scales by 10**decimals first."""
    decimals = attr(attrs, "decimals", int, 0)
    x = xs[0]
    if x.dtype.kind != "f":
        return x.copy()
    return np.round(x, decimals) if decimals else np.rint(x)


def _rounding(fn):
    return lambda xs, attrs: fn(xs[0]) if xs[0].dtype.kind == "f" else xs[0].copy()


register("round", infer=numeric_infer, saves=(), backward=_zeros, forward=_round)
for _name, _fn in [("floor", np.floor), ("ceil", np.ceil), ("trunc", np.trunc)]:
    register(_name, infer=numeric_infer, saves=(), backward=_zeros, forward=_rounding(_fn))
