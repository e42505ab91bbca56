"""Elementwise ops: arithmetic with broadcasting, unary math, comparisons.

Binary ops take two tensors, or one tensor and a Python scalar in attrs["other"]. Gradients may
come back in the broadcast shape: the executor sums them to each input's shape.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..dtypes import BOOL, floating_result, result_type
from ..graph import TensorSpec
from ..registry import INPUTS, OUTPUT, Attrs, attr, broadcast_shapes, register

SCALAR = (bool, int, float)


def _operand_specs(specs: Sequence[TensorSpec], attrs: Attrs) -> tuple[tuple[int, ...], np.dtype]:
    if len(specs) == 2:
        return broadcast_shapes(specs[0].shape, specs[1].shape), result_type(specs)
    other = attr(attrs, "other", SCALAR)
    return specs[0].shape, result_type(specs, [other])


def _operands(xs: Sequence[np.ndarray], attrs: Attrs, dtype: np.dtype | None = None):
    """Both operands in the computation dtype (PyTorch casts before computing, NumPy after)."""
    a = xs[0]
    if len(xs) == 2:
        b = xs[1]
        if dtype is None:
            dtype = a.dtype if a.dtype == b.dtype else result_type(
                [TensorSpec(a.shape, a.dtype), TensorSpec(b.shape, b.dtype)])
        return a.astype(dtype, copy=False), b.astype(dtype, copy=False)
    other = attrs["other"]
    if dtype is None:
        dtype = result_type([TensorSpec(a.shape, a.dtype)], [other])
    return a.astype(dtype, copy=False), dtype.type(other)


def binary_infer(specs: Sequence[TensorSpec], attrs: Attrs) -> TensorSpec:
    return TensorSpec(*_operand_specs(specs, attrs))


def float_binary_infer(specs: Sequence[TensorSpec], attrs: Attrs) -> TensorSpec:
    shape, dtype = _operand_specs(specs, attrs)
    return TensorSpec(shape, floating_result(dtype))


def compare_infer(specs: Sequence[TensorSpec], attrs: Attrs) -> TensorSpec:
    shape, _ = _operand_specs(specs, attrs)
    return TensorSpec(shape, BOOL)


def same_infer(specs: Sequence[TensorSpec], attrs: Attrs) -> TensorSpec:
    return specs[0]


def float_unary_infer(specs: Sequence[TensorSpec], attrs: Attrs) -> TensorSpec:
    return TensorSpec(specs[0].shape, floating_result(specs[0].dtype))


def _alpha(attrs: Attrs):
    return attr(attrs, "alpha", (int, float), 1)


# ---------------------------------------------------------------------------------------------
# binary arithmetic


def _add(xs, attrs):
    a, b = _operands(xs, attrs)
    alpha = _alpha(attrs)
    return a + b if alpha == 1 else a + alpha * b


register("add", arity=(1, 2), infer=binary_infer, forward=_add, saves=(),
         backward=lambda g, xs, out, attrs: (g, g * _alpha(attrs)))


def _sub(xs, attrs):
    a, b = _operands(xs, attrs)
    alpha = _alpha(attrs)
    return a - b if alpha == 1 else a - alpha * b


register("sub", arity=(1, 2), infer=binary_infer, forward=_sub, saves=(),
         backward=lambda g, xs, out, attrs: (g, -g * _alpha(attrs)))


def _rsub(xs, attrs):
    """other - alpha * x, for `1 - x` (RsubBackward1)."""
    a, b = _operands(xs, attrs)
    return b - _alpha(attrs) * a


register("rsub", arity=1, infer=binary_infer, forward=_rsub, saves=(),
         backward=lambda g, xs, out, attrs: (-g * _alpha(attrs),))


def _mul(xs, attrs):
    a, b = _operands(xs, attrs)
    return a * b


def _mul_backward(g, xs, out, attrs):
    if len(xs) == 1:
        return (g * attrs["other"],)
    return g * xs[1], g * xs[0]


register("mul", arity=(1, 2), infer=binary_infer, forward=_mul, backward=_mul_backward,
         saves=(INPUTS,))


def _div(xs, attrs):
    dtype = None
    if any(x.dtype.kind != "f" for x in xs):
        dtype = float_binary_infer([TensorSpec(x.shape, x.dtype) for x in xs], attrs).dtype
    a, b = _operands(xs, attrs, dtype)
    return a / b


def _div_backward(g, xs, out, attrs):
    if len(xs) == 1:
        return (g / attrs["other"],)
    a, b = xs
    return g / b, -g * a / (b * b)


register("div", arity=(1, 2), infer=float_binary_infer, forward=_div, backward=_div_backward,
         saves=(INPUTS,))


# ---------------------------------------------------------------------------------------------
# unary math


register("neg", infer=same_infer, forward=lambda xs, attrs: np.negative(xs[0]), saves=(),
         backward=lambda g, xs, out, attrs: (-g,))

register("exp", infer=float_unary_infer, forward=lambda xs, attrs: np.exp(xs[0]), saves=(OUTPUT,),
         backward=lambda g, xs, out, attrs: (g * out,))

register("tanh", infer=float_unary_infer, forward=lambda xs, attrs: np.tanh(xs[0]), saves=(OUTPUT,),
         backward=lambda g, xs, out, attrs: (g * (1 - out * out),))


# ---------------------------------------------------------------------------------------------
# comparisons (no gradient; bool outputs)


def _compare(ufunc):
    def forward(xs, attrs):
        a, b = _operands(xs, attrs)
        return ufunc(a, b)
    return forward


for _name, _ufunc in [("eq", np.equal), ("ne", np.not_equal), ("lt", np.less),
                      ("le", np.less_equal), ("gt", np.greater), ("ge", np.greater_equal)]:
    register(_name, arity=(1, 2), infer=compare_infer, forward=_compare(_ufunc), backward=None)
