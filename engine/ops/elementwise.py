"""Elementwise binary ops: arithmetic with broadcasting, comparisons, logical ops.

Binary ops take two tensors, or one tensor and a Python scalar in attrs["other"]. Gradients may
come back in the broadcast shape: the executor sums them to each input's shape.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..dtypes import BOOL, floating_result, result_type
from ..errors import AttributeValueError, DTypeError, GraphError
from ..graph import TensorSpec
from ..registry import INPUTS, OUTPUT, Attrs, attr, broadcast_shapes, keep_max, keep_min, register

SCALAR = (bool, int, float)


def _operand_specs(specs: Sequence[TensorSpec], attrs: Attrs) -> tuple[tuple[int, ...], np.dtype]:
    if len(specs) == 2:
        a, b = specs
        shape = a.shape if a.shape == b.shape else broadcast_shapes(a.shape, b.shape)
        return shape, result_type(specs)
    other = attr(attrs, "other", SCALAR)
    return specs[0].shape, result_type(specs, [other])


def _operands(xs: Sequence[np.ndarray], attrs: Attrs, dtype: np.dtype | None = None):
    """Both operands in the computation dtype (PyTorch casts before computing, NumPy after)."""
    a = xs[0]
    if dtype is None and len(xs) == 1 and a.dtype.kind == "f":
        return a, attrs["other"]     # a Python scalar never changes a float tensor's dtype
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
    shape, dtype = _operand_specs(specs, attrs)
    first = specs[0]
    if shape == first.shape and dtype == first.dtype:
        return first     # shared spec objects: cheaper plans, and the executor caches per spec
    return TensorSpec(shape, dtype)


def float_binary_infer(specs: Sequence[TensorSpec], attrs: Attrs) -> TensorSpec:
    shape, dtype = _operand_specs(specs, attrs)
    return TensorSpec(shape, floating_result(dtype))


def compare_infer(specs: Sequence[TensorSpec], attrs: Attrs) -> TensorSpec:
    shape, _ = _operand_specs(specs, attrs)
    return TensorSpec(shape, BOOL)


def same_infer(specs: Sequence[TensorSpec], attrs: Attrs) -> TensorSpec:
    return specs[0]


def float_unary_infer(specs: Sequence[TensorSpec], attrs: Attrs) -> TensorSpec:
    if specs[0].dtype.kind == "f":
        return specs[0]
    return TensorSpec(specs[0].shape, floating_result(specs[0].dtype))


def tensor_operands(n_inputs: int) -> tuple[str, ...]:
    """Binary rules read their inputs only when both operands are tensors."""
    return (INPUTS,) if n_inputs == 2 else ()


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
    a, b = xs
    if a is b:
        # x * x: one full-size temporary instead of two products and their sum (doubling is exact,
        # so the result is the same to the bit).
        ga = g * a
        ga *= 2
        return ga, None
    return g * b, g * a


register("mul", arity=(1, 2), infer=binary_infer, forward=_mul, backward=_mul_backward,
         saves=tensor_operands)


def _rounding_mode(attrs: Attrs) -> str | None:
    mode = attr(attrs, "rounding_mode", str, None)
    if mode not in (None, "trunc", "floor"):
        raise AttributeValueError("div expected rounding_mode to be one of None, 'trunc', or 'floor' "
                                  f"but found '{mode}'")
    return mode


def div_infer(specs: Sequence[TensorSpec], attrs: Attrs) -> TensorSpec:
    if _rounding_mode(attrs) is None:
        return float_binary_infer(specs, attrs)
    return binary_infer(specs, attrs)


def _div(xs, attrs):
    mode = _rounding_mode(attrs)
    dtype = None
    if mode is None and any(x.dtype.kind != "f" for x in xs):
        dtype = float_binary_infer([TensorSpec(x.shape, x.dtype) for x in xs], attrs).dtype
    a, b = _operands(xs, attrs, dtype)
    if mode is None:
        return a / b
    if np.result_type(a, b).kind == "f":
        q = a / b
        return np.floor(q) if mode == "floor" else np.trunc(q)
    with np.errstate(divide="ignore"):
        q = np.floor_divide(a, b)
        if mode == "trunc":  # floor and trunc differ for inexact quotients of mixed sign
            q = q + ((np.remainder(a, b) != 0) & ((a < 0) != (b < 0)))
    return q


def _div_backward(g, xs, out, attrs):
    if _rounding_mode(attrs) is not None:  # DivBackward2: a step function, zero almost everywhere
        zero = np.zeros(g.shape, g.dtype)
        return zero, (zero if len(xs) == 2 else None)
    if len(xs) == 1:
        return (g / attrs["other"],)
    a, b = xs
    return g / b, -g * a / (b * b)


register("div", arity=(1, 2), infer=div_infer, forward=_div, backward=_div_backward,
         saves=tensor_operands)


# remainder (Python's %, the sign of the divisor) and fmod (C's, the sign of the dividend):
# a - q * b with q = floor(a / b) or trunc(a / b). Both are differentiable in the dividend (1) and
# the divisor (-q); q's own derivative is zero almost everywhere.


def _fmod(xs, attrs):
    a, b = _operands(xs, attrs)
    if np.result_type(a, b).kind in "iub":
        if np.any(np.asarray(b) == 0):
            raise GraphError("ZeroDivisionError")
        return np.fmod(a, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.fmod(a, b)


def _remainder(xs, attrs):
    """ATen's: fmod moved into the divisor's sign (NumPy differs on zeros: -0. % 2 is +0. there)."""
    a, b = _operands(xs, attrs)
    mod = _fmod(xs, attrs)
    shift = (mod != 0) & ((b < 0) != (mod < 0))
    return np.where(shift, mod + b, mod) if shift.any() else mod


def _modulo_backward(rounding):
    def backward(g, xs, out, attrs):
        if len(xs) == 1:
            return (g,)
        a, b = xs
        with np.errstate(divide="ignore", invalid="ignore"):
            return g, -g * rounding(a / b)
    return backward


register("remainder", arity=(1, 2), infer=binary_infer, forward=_remainder,
         backward=_modulo_backward(np.floor), saves=tensor_operands)
register("fmod", arity=(1, 2), infer=binary_infer, forward=_fmod,
         backward=_modulo_backward(np.trunc), saves=tensor_operands)


# pow: tensor ** tensor (2 inputs), tensor ** scalar (attrs["other"] is the exponent); `rpow` is
# scalar ** tensor (attrs["other"] is the base).


def pow_infer(specs: Sequence[TensorSpec], attrs: Attrs) -> TensorSpec:
    spec = binary_infer(specs, attrs)
    if len(specs) == 1 and spec.dtype.kind in "iub" and attrs["other"] < 0:
        raise DTypeError("Integers to negative integer powers are not allowed.")
    return spec


def _pow(xs, attrs):
    a, b = _operands(xs, attrs)
    return np.power(a, b)


def _pow_backward(g, xs, out, attrs):
    if len(xs) == 1:
        e = attrs["other"]
        if e == 0:  # pow_backward special-cases e == 0: the gradient is 0 even where x**-1 is inf
            return (np.zeros(g.shape, g.dtype),)
        return (g * (e * np.power(xs[0], e - 1)),)
    a, b = xs
    with np.errstate(divide="ignore", invalid="ignore"):
        ga = np.where(b == 0, 0, g * b * np.power(a, b - 1))
        gb = np.where((a == 0) & (b >= 0), 0, g * out * np.log(a))
    return ga, gb


register("pow", arity=(1, 2), infer=pow_infer, forward=_pow, backward=_pow_backward,
         saves=lambda n: (INPUTS, OUTPUT) if n == 2 else (INPUTS,))


def _rpow(xs, attrs):
    a, b = _operands(xs, attrs)
    return np.power(b, a)


def _rpow_backward(g, xs, out, attrs):
    base = np.asarray(attrs["other"], g.dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        grad = g * out * np.log(base)
    if base == 0:  # PowBackward2 masks base == 0 where the exponent is >= 0
        grad = np.where(xs[0] >= 0, 0, grad)
    return (grad,)


register("rpow", arity=1, infer=binary_infer, forward=_rpow, backward=_rpow_backward)


# maximum/minimum: ties give half the gradient to each side (NaN compares unequal: both get it).


def _maximum_backward(g, xs, out, attrs):
    a, b = xs
    half = np.where(a == b, g / 2, g)
    return np.where(a < b, 0, half), np.where(b < a, 0, half)


def _minimum_backward(g, xs, out, attrs):
    a, b = xs
    half = np.where(a == b, g / 2, g)
    return np.where(a > b, 0, half), np.where(b > a, 0, half)


register("maximum", arity=2, infer=binary_infer, saves=(INPUTS,), backward=_maximum_backward,
         forward=lambda xs, attrs: keep_max(*_operands(xs, attrs)))
register("minimum", arity=2, infer=binary_infer, saves=(INPUTS,), backward=_minimum_backward,
         forward=lambda xs, attrs: keep_min(*_operands(xs, attrs)))


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


# ---------------------------------------------------------------------------------------------
# logical ops and float classification (no gradient; bool outputs)


def logical_infer(specs: Sequence[TensorSpec], attrs: Attrs) -> TensorSpec:
    if len(specs) == 2:
        return TensorSpec(broadcast_shapes(specs[0].shape, specs[1].shape), BOOL)
    if "other" in attrs:
        attr(attrs, "other", SCALAR)
    return TensorSpec(specs[0].shape, BOOL)


def _logical(ufunc):
    def forward(xs, attrs):
        other = xs[1] if len(xs) == 2 else attrs["other"]
        return ufunc(xs[0].astype(bool, copy=False), np.asarray(other).astype(bool))
    return forward


for _name, _ufunc in [("logical_and", np.logical_and), ("logical_or", np.logical_or),
                      ("logical_xor", np.logical_xor)]:
    register(_name, arity=(1, 2), infer=logical_infer, forward=_logical(_ufunc), backward=None)

register("logical_not", infer=logical_infer, backward=None,
         forward=lambda xs, attrs: np.logical_not(xs[0]))

for _name, _ufunc in [("isnan", np.isnan), ("isinf", np.isinf), ("isfinite", np.isfinite)]:
    register(_name, infer=logical_infer, backward=None,
             forward=lambda xs, attrs, _ufunc=_ufunc: _ufunc(xs[0]))


# ---------------------------------------------------------------------------------------------
# clamp (x; min=, max=) with scalar bounds; clamp_tensor (x[, min][, max]; has_min, has_max) with
# tensor bounds; clamp_min/clamp_max: (x) with attrs["min"]/["max"], or (x, bound).
# Boundaries pass the gradient to x (min <= x <= max).


def clamp_infer(specs, attrs):
    bounds = [attr(attrs, k, SCALAR, None) for k in ("min", "max")]
    if bounds == [None, None]:
        raise AttributeValueError("torch.clamp: At least one of 'min' or 'max' must not be None")
    return TensorSpec(specs[0].shape, result_type(specs, [b for b in bounds if b is not None]))


def _tensor_bounds(n_inputs: int, attrs: Attrs) -> tuple[int | None, int | None]:
    """Input positions of the min and max tensors of clamp_tensor."""
    has_min, has_max = attr(attrs, "has_min", bool, False), attr(attrs, "has_max", bool, False)
    if 1 + has_min + has_max != n_inputs or not (has_min or has_max):
        raise AttributeValueError("clamp_tensor takes x plus one input for each of has_min/has_max "
                                  "set (at least one)")
    return (1 if has_min else None), ((1 + has_min) if has_max else None)


def clamp_tensor_infer(specs, attrs):
    _tensor_bounds(len(specs), attrs)
    return TensorSpec(broadcast_shapes(*(s.shape for s in specs)), result_type(specs))


def _clamp_bounds(xs, attrs, dtype):
    if "has_min" in attrs or "has_max" in attrs:
        i_lo, i_hi = _tensor_bounds(len(xs), attrs)
        return tuple(None if i is None else xs[i].astype(dtype, copy=False) for i in (i_lo, i_hi))
    lo, hi = attrs.get("min"), attrs.get("max")
    return (None if lo is None else dtype.type(lo)), (None if hi is None else dtype.type(hi))


def _clamp(xs, attrs):
    dtype = result_type([TensorSpec(x.shape, x.dtype) for x in xs],
                        [attrs[k] for k in ("min", "max") if attrs.get(k) is not None])
    out = xs[0].astype(dtype, copy=False)
    lo, hi = _clamp_bounds(xs, attrs, dtype)
    if lo is not None:
        out = keep_max(out, lo)
    if hi is not None:
        out = keep_min(out, hi)
    return out


def _clamp_backward(g, xs, out, attrs):
    x = xs[0]
    lo, hi = _clamp_bounds(xs, attrs, x.dtype)
    # Tensor bounds may broadcast x up (clamp(x[()], min=b[2])): the mask has the output's shape.
    inside = np.ones(g.shape, bool)
    if lo is not None:
        inside &= x >= lo
    if hi is not None:
        inside &= x <= hi
    grads = [np.where(inside, g, 0)]
    # clamp_backward_min_max: the min bound gets x < min (unless min > max, when the result is
    # max everywhere); the max bound gets x > max, or everything when max < min.
    if lo is not None and len(xs) > 1:
        grads.append(np.where((x < lo) & (lo < hi) if hi is not None else x < lo, g, 0))
    if hi is not None and len(xs) > 1:
        grads.append(np.where((x > hi) | (hi < lo) if lo is not None else x > hi, g, 0))
    return tuple(grads)


register("clamp", infer=clamp_infer, forward=_clamp, backward=_clamp_backward, saves=(INPUTS,))
register("clamp_tensor", arity=(2, 3), infer=clamp_tensor_infer, forward=_clamp,
         backward=_clamp_backward, saves=(INPUTS,))


def _one_sided(key: str, keep, pick):
    """clamp_min (keep = maximum) / clamp_max (keep = minimum)."""
    def infer(specs, attrs):
        if len(specs) == 2:
            return TensorSpec(broadcast_shapes(specs[0].shape, specs[1].shape), result_type(specs))
        return TensorSpec(specs[0].shape, result_type(specs, [attr(attrs, key, SCALAR)]))

    def forward(xs, attrs):
        dtype = infer([TensorSpec(x.shape, x.dtype) for x in xs], attrs).dtype
        bound = xs[1].astype(dtype, copy=False) if len(xs) == 2 else dtype.type(attrs[key])
        return keep(xs[0].astype(dtype, copy=False), bound)

    def backward(g, xs, out, attrs):
        bound = xs[1] if len(xs) == 2 else attrs[key]
        passes = pick(xs[0], bound)
        gx = np.where(passes, g, 0)
        return (gx,) if len(xs) == 1 else (gx, np.where(passes, 0, g))
    return infer, forward, backward


for _name, _key, _keep, _pick in [("clamp_min", "min", keep_max, np.greater_equal),
                                  ("clamp_max", "max", keep_min, np.less_equal)]:
    _infer, _forward, _backward = _one_sided(_key, _keep, _pick)
    register(_name, arity=(1, 2), infer=_infer, forward=_forward, backward=_backward,
             saves=(INPUTS,))
