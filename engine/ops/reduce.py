"""Reductions: sum/mean/prod/var/std, max/min families, arg-ops, logsumexp, norm, all/any.

Common attributes: `dim` (None, an int or a tuple of ints; None and () mean every dim) and
`keepdim` (bool, default False). Backward rules expand the gradient back over the reduced dims.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..dtypes import BOOL, DEFAULT_FLOAT, INT64, TORCH_NAMES, parse_dtype
from ..errors import AttributeValueError, DTypeError, ShapeError
from ..graph import TensorSpec
from ..registry import INPUTS, Attrs, attr, norm_dim, norm_dims, register
from .unary import as_float


def reduced(spec: TensorSpec, attrs: Attrs) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(dims reduced, output shape) for the `dim`/`keepdim` attributes."""
    dims = norm_dims(attrs.get("dim"), spec.ndim)
    keepdim = attr(attrs, "keepdim", bool, False)
    if keepdim:
        shape = tuple(1 if i in dims else s for i, s in enumerate(spec.shape))
    else:
        shape = tuple(s for i, s in enumerate(spec.shape) if i not in dims)
    return dims, shape


def expand_back(g: np.ndarray, x: np.ndarray, attrs: Attrs) -> np.ndarray:
    """Undo a reduction's shape change: unsqueeze the reduced dims, then broadcast to x."""
    dims = norm_dims(attrs.get("dim"), x.ndim)
    if dims and not attrs.get("keepdim"):
        g = np.expand_dims(g, dims)
    return np.broadcast_to(g, x.shape)


def _out_dtype(spec: TensorSpec, attrs: Attrs, integers_to: np.dtype) -> np.dtype:
    if attrs.get("dtype") is not None:
        return parse_dtype(attrs["dtype"])
    return integers_to if spec.dtype.kind in "biu" else spec.dtype


def _require_nonempty(spec: TensorSpec, dims: Sequence[int], name: str) -> None:
    for d in dims:
        if spec.shape[d] == 0:
            raise ShapeError(f"{name}(): Expected reduction dim {d} to have non-zero size.")


def _require_float(spec: TensorSpec, what: str) -> None:
    if spec.dtype.kind != "f":
        raise DTypeError(f"{what}: Expected a floating point tensor as input. "
                         f"Got {TORCH_NAMES[spec.dtype.name]}")


# ---------------------------------------------------------------------------------------------
# sum, mean, prod


def sum_infer(specs, attrs):
    _, shape = reduced(specs[0], attrs)
    return TensorSpec(shape, _out_dtype(specs[0], attrs, INT64))


def _sum(xs, attrs):
    x = xs[0]
    dims = norm_dims(attrs.get("dim"), x.ndim)
    dtype = sum_infer([TensorSpec(x.shape, x.dtype)], attrs).dtype
    return np.sum(x, axis=dims, keepdims=bool(attrs.get("keepdim")), dtype=dtype)


register("sum", infer=sum_infer, forward=_sum, saves=(),
         backward=lambda g, xs, out, attrs: (expand_back(g, xs[0], attrs),))


def mean_infer(specs, attrs):
    spec = specs[0]
    _, shape = reduced(spec, attrs)
    dtype = _out_dtype(spec, attrs, spec.dtype)
    if dtype.kind != "f":
        raise DTypeError("mean(): could not infer output dtype. Input dtype must be either a "
                         f"floating point or complex dtype. Got: {TORCH_NAMES[dtype.name]}")
    return TensorSpec(shape, dtype)


def _count(x: np.ndarray, attrs: Attrs) -> int:
    n = 1
    for d in norm_dims(attrs.get("dim"), x.ndim):
        n *= x.shape[d]
    return n


def _mean(xs, attrs):
    x = xs[0]
    dims = norm_dims(attrs.get("dim"), x.ndim)
    dtype = mean_infer([TensorSpec(x.shape, x.dtype)], attrs).dtype
    total = np.sum(x, axis=dims, keepdims=bool(attrs.get("keepdim")), dtype=dtype)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / dtype.type(_count(x, attrs))


register("mean", infer=mean_infer, forward=_mean, saves=(),
         backward=lambda g, xs, out, attrs: (expand_back(g / _count(xs[0], attrs), xs[0], attrs),))


def _prod_dim(attrs: Attrs, ndim: int) -> int | None:
    dim = attrs.get("dim")
    return None if dim is None else norm_dim(dim, ndim)


def prod_infer(specs, attrs):
    spec = specs[0]
    dim = _prod_dim(attrs, spec.ndim)
    return sum_infer(specs, {**attrs, "dim": () if dim is None else dim})


def _prod(xs, attrs):
    x = xs[0]
    dtype = prod_infer([TensorSpec(x.shape, x.dtype)], attrs).dtype
    dim = _prod_dim(attrs, x.ndim)
    return np.prod(x, axis=dim, keepdims=bool(attrs.get("keepdim")) and dim is not None,
                   dtype=dtype)


def _prod_backward(g, xs, out, attrs):
    """d prod / d x_i is the product of the others: exclusive prefix times suffix products, which
    stays exact when some x are zero (unlike out / x)."""
    x = xs[0]
    if x.size == 0:   # nothing to differentiate (the product of nothing is 1)
        return (np.zeros(x.shape, g.dtype),)
    dim = _prod_dim(attrs, x.ndim)
    moved = x.reshape(-1) if dim is None else np.moveaxis(x, dim, -1)
    ones = np.ones(moved.shape[:-1] + (1,), x.dtype)
    prefix = np.cumprod(np.concatenate([ones, moved[..., :-1]], axis=-1), axis=-1)
    suffix = np.cumprod(np.concatenate([ones, moved[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
    others = prefix * suffix
    others = others.reshape(x.shape) if dim is None else np.moveaxis(others, -1, dim)
    keep = {"dim": () if dim is None else dim, "keepdim": attrs.get("keepdim") and dim is not None}
    return (expand_back(g, x, keep) * others,)


register("prod", infer=prod_infer, forward=_prod, backward=_prod_backward, saves=(INPUTS,))


# ---------------------------------------------------------------------------------------------
# var, std (correction defaults to 1; `unbiased` is accepted as the older spelling)


def _correction(attrs: Attrs) -> float:
    if attrs.get("unbiased") is not None:
        return 1.0 if attr(attrs, "unbiased", bool) else 0.0
    return attr(attrs, "correction", float, 1.0)


def var_infer(specs, attrs):
    spec = specs[0]
    if spec.dtype.kind != "f":
        raise DTypeError("std and var only support floating point and complex dtypes")
    _correction(attrs)
    return TensorSpec(reduced(spec, attrs)[1], spec.dtype)


def _var(xs, attrs):
    x = xs[0]
    dims = norm_dims(attrs.get("dim"), x.ndim)
    ddof = _correction(attrs)
    with np.errstate(invalid="ignore", divide="ignore"):
        if _count(x, attrs) - ddof <= 0:  # torch divides by max(0, N - correction)
            v = np.sum((x - x.mean(axis=dims, keepdims=True)) ** 2, axis=dims,
                       keepdims=bool(attrs.get("keepdim"))) / x.dtype.type(0)
        else:   # (np.var would warn about the degrees of freedom above)
            # Shifted by each slice's first element: a constant slice is exactly 0, as ATen's
            # Welford update gives (its mean is not always exact: 7e-32 instead of 0.)
            first = x[tuple(slice(0, 1) if d in dims else slice(None) for d in range(x.ndim))]
            v = np.var(x - first, axis=dims, ddof=ddof, keepdims=bool(attrs.get("keepdim")))
    return np.asarray(v, x.dtype)


def _centered_scale(x: np.ndarray, attrs: Attrs) -> np.ndarray:
    """(x - mean) / (N - correction), the shared part of the var and std gradients."""
    dims = norm_dims(attrs.get("dim"), x.ndim)
    with np.errstate(invalid="ignore", divide="ignore"):
        denom = x.dtype.type(max(0.0, _count(x, attrs) - _correction(attrs)))
        return (x - x.mean(axis=dims, keepdims=True)) / denom


register("var", infer=var_infer, forward=_var, saves=(INPUTS,),
         backward=lambda g, xs, out, attrs: (
             2 * expand_back(g, xs[0], attrs) * _centered_scale(xs[0], attrs),))


def _std_backward(g, xs, out, attrs):
    # torch's std_backward: grad / (2 * std), masked to 0 where std == 0 (constant slices)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(out == 0, out.dtype.type(0), g / out)
        return (expand_back(scale, xs[0], attrs) * _centered_scale(xs[0], attrs),)


register("std", infer=var_infer, backward=_std_backward,
         forward=lambda xs, attrs: np.sqrt(_var(xs, attrs)))


# ---------------------------------------------------------------------------------------------
# amax/amin and full max/min: ties share the gradient evenly


def amax_infer(specs, attrs):
    dims, shape = reduced(specs[0], attrs)
    _require_nonempty(specs[0], dims, "amax")
    return TensorSpec(shape, specs[0].dtype)


def _even_share(g, xs, out, attrs):
    """Gradient split equally among the elements equal to the extreme value."""
    x = xs[0]
    hit = x == expand_back(out, x, attrs)
    count = expand_back(np.sum(hit, axis=norm_dims(attrs.get("dim"), x.ndim),
                               keepdims=bool(attrs.get("keepdim"))), x, attrs)
    return (expand_back(g, x, attrs) * hit / count,)


def _full_even_share(g, xs, out, attrs):
    """max()/min() of everything: torch writes +0. off the extremes (amax's g * mask gives -0.
    for a negative g, as torch's amax does)."""
    x = xs[0]
    hit = x == out
    return (np.where(hit, g / np.sum(hit), 0).astype(g.dtype, copy=False),)


def _extreme(reduce):
    def forward(xs, attrs):
        x = xs[0]
        return reduce(x, axis=norm_dims(attrs.get("dim"), x.ndim),
                      keepdims=bool(attrs.get("keepdim")))
    return forward


register("amax", infer=amax_infer, forward=_extreme(np.max), backward=_even_share)
register("amin", infer=amax_infer, forward=_extreme(np.min), backward=_even_share)


def full_extreme_infer(specs, attrs):
    if set(attrs) - {"dim", "keepdim"} or attrs.get("dim") is not None:
        raise AttributeValueError("max()/min() reduce every dim; use max_dim/min_dim for one dim")
    if specs[0].numel == 0:
        raise ShapeError("max(): Expected reduction dim to be specified for input.numel() == 0. "
                         "Specify the reduction dim with the 'dim' argument.")
    return TensorSpec((), specs[0].dtype)


register("max", infer=full_extreme_infer, forward=_extreme(np.max), backward=_full_even_share)
register("min", infer=full_extreme_infer, forward=_extreme(np.min), backward=_full_even_share)


# ---------------------------------------------------------------------------------------------
# max(dim)/min(dim) values (one-hot at the first extreme index) and the arg-ops


def dim_extreme_infer(specs, attrs):
    spec = specs[0]
    dim = norm_dim(attr(attrs, "dim", int), spec.ndim)
    if spec.ndim:
        _require_nonempty(spec, (dim,), "max")
    return TensorSpec(reduced(spec, {"dim": dim, "keepdim": attrs.get("keepdim")})[1], spec.dtype)


def _arg_extreme(x: np.ndarray, dim: int | None, keepdim: bool, largest: bool) -> np.ndarray:
    if x.ndim == 0:
        return np.zeros((), INT64)
    arg = np.argmax if largest else np.argmin
    if dim is None:
        i = arg(x.reshape(-1))
        return np.full((1,) * x.ndim if keepdim else (), i, INT64)
    return arg(x, axis=dim, keepdims=keepdim).astype(INT64, copy=False)


def _dim_extreme(largest):
    def forward(xs, attrs):
        x = xs[0]
        if x.ndim == 0:
            return x.copy()
        # the value at the returned index (the first extreme), as PyTorch: among tied zeros that
        # decides between 0.0 and -0.0
        dim = norm_dim(attrs["dim"], x.ndim)
        out = np.take_along_axis(x, _arg_extreme(x, dim, True, largest), dim)
        return out if attrs.get("keepdim") else np.squeeze(out, dim)
    return forward


def _one_hot_backward(largest):
    def backward(g, xs, out, attrs):
        x = xs[0]
        if x.ndim == 0:
            return (g,)
        dim = norm_dim(attrs["dim"], x.ndim)
        index = _arg_extreme(x, dim, True, largest)
        grad = np.zeros(x.shape, g.dtype)
        np.put_along_axis(grad, index, g if attrs.get("keepdim") else np.expand_dims(g, dim), dim)
        return (grad,)
    return backward


register("max_dim", infer=dim_extreme_infer, forward=_dim_extreme(True),
         backward=_one_hot_backward(True), saves=(INPUTS,))
register("min_dim", infer=dim_extreme_infer, forward=_dim_extreme(False),
         backward=_one_hot_backward(False), saves=(INPUTS,))


def arg_infer(specs, attrs):
    spec = specs[0]
    keepdim = attr(attrs, "keepdim", bool, False)
    if attrs.get("dim") is None:
        if spec.numel == 0:
            raise ShapeError("argmax(): Expected reduction dim to be specified for "
                             "input.numel() == 0.")
        return TensorSpec((1,) * spec.ndim if keepdim else (), INT64)
    dim = norm_dim(attr(attrs, "dim", int), spec.ndim)
    if spec.ndim:
        _require_nonempty(spec, (dim,), "argmax")
    return TensorSpec(reduced(spec, {"dim": dim, "keepdim": keepdim})[1], INT64)


def _arg_forward(largest):
    def forward(xs, attrs):
        x = xs[0]
        dim = attrs.get("dim")
        return _arg_extreme(x, None if dim is None else norm_dim(dim, x.ndim),
                            bool(attrs.get("keepdim")), largest)
    return forward


register("argmax", infer=arg_infer, forward=_arg_forward(True), backward=None)
register("argmin", infer=arg_infer, forward=_arg_forward(False), backward=None)


# ---------------------------------------------------------------------------------------------
# logsumexp, vector norm


def float_reduce_infer(specs, attrs):
    spec = specs[0]
    dtype = spec.dtype if spec.dtype.kind == "f" else DEFAULT_FLOAT
    return TensorSpec(reduced(spec, attrs)[1], dtype)


def _logsumexp(xs, attrs):
    x = as_float(xs[0])
    dims = norm_dims(attrs.get("dim"), x.ndim)
    if x.size == 0:
        return np.log(np.sum(np.exp(x), axis=dims, keepdims=bool(attrs.get("keepdim"))))
    m = np.max(x, axis=dims, keepdims=True)
    m = np.where(np.isinf(m), 0, m)  # all -inf (or +inf) slices: shift by 0 as torch does
    with np.errstate(divide="ignore"):
        s = np.log(np.sum(np.exp(x - m), axis=dims, keepdims=True)) + m
    return s if attrs.get("keepdim") else np.squeeze(s, axis=dims)


register("logsumexp", infer=float_reduce_infer, forward=_logsumexp,
         backward=lambda g, xs, out, attrs: (
             expand_back(g, xs[0], attrs) * np.exp(xs[0] - expand_back(out, xs[0], attrs)),))


def _norm_p(attrs: Attrs) -> float:
    p = attrs.get("p", 2.0)
    if isinstance(p, str):
        named = {"fro": 2.0, "inf": np.inf, "-inf": -np.inf}
        if p not in named:
            raise AttributeValueError(f"norm: unsupported p {p!r}")
        return named[p]
    return attr(attrs, "p", float, 2.0)


def norm_infer(specs, attrs):
    _require_float(specs[0], "linalg.vector_norm")
    _norm_p(attrs)
    dims, shape = reduced(specs[0], attrs)
    if _norm_p(attrs) < 0 or np.isinf(_norm_p(attrs)):
        _require_nonempty(specs[0], dims, "linalg.vector_norm")
    return TensorSpec(shape, specs[0].dtype)


def _norm(xs, attrs):
    x, p = xs[0], _norm_p(attrs)
    dims = norm_dims(attrs.get("dim"), x.ndim)
    keepdims = bool(attrs.get("keepdim"))
    a = np.abs(x)
    if p == np.inf:
        return np.max(a, axis=dims, keepdims=keepdims)
    if p == -np.inf:
        return np.min(a, axis=dims, keepdims=keepdims)
    if p == 0:
        return np.sum(a != 0, axis=dims, keepdims=keepdims).astype(x.dtype)
    if p == 2 and x.dtype != np.float16:
        # ATen sums squares in vector lanes here (and elsewhere serially); NumPy's pairwise sum
        # agrees about as often as a serial one, and is fast
        return np.sqrt(np.sum(a * a, axis=dims, keepdims=keepdims))
    return _serial_p_norm(a, p, dims, keepdims)


def _serial_p_norm(a: np.ndarray, p: float, dims: tuple[int, ...], keepdims: bool) -> np.ndarray:
    """sum(|x|^p)^(1/p) to the bit as ATen's NormOps/NormOneOps (for the usual sizes).

    ATen adds the powers one by one, in reduction order, in float (double for double), each power
    a correctly rounded powf, and raises the sum to (1.0f / p); a single reduced element is |x|
    itself. NumPy's pairwise sum and SIMD power differ in the last bit, which shows as
    `x - x.norm(p=3)` printing 2.3842e-07 instead of 0. (float64 keeps NumPy's power, a few ULP
    off glibc's in some 5% of cases: a correctly rounded one costs ~50x.)
    """
    kept = a.ndim - len(dims)
    moved = np.moveaxis(a, dims, tuple(range(kept, a.ndim)))
    rows = moved.reshape(moved.shape[:kept] + (-1,))
    if rows.shape[-1] == 1:
        out = rows[..., 0]
    else:
        acc = np.dtype(np.float64 if a.dtype == np.float64 else np.float32)
        wide = rows.astype(acc)
        with np.errstate(divide="ignore"):
            if p == 1:
                powered = wide
            elif p == 2:      # float16 only: its squares are exact in float
                powered = wide * wide
            else:
                powered = np.power(rows.astype(np.float64), p).astype(acc)
            if rows.shape[-1] == 0:
                total = np.zeros(rows.shape[:-1], acc)
            else:   # cumsum accumulates left to right, np.sum pairwise
                total = np.cumsum(powered, axis=-1, dtype=acc)[..., -1]
            if p == 1:
                out = total
            elif p == 2:
                out = np.sqrt(total)
            else:
                out = np.power(total.astype(np.float64), float(acc.type(1) / acc.type(p)))
        out = out.astype(a.dtype)
    return np.expand_dims(out, dims) if keepdims else out


def _norm_backward(g, xs, out, attrs):
    x, p = xs[0], _norm_p(attrs)
    if p == 0:
        return (np.zeros(x.shape, g.dtype),)
    if np.isinf(p):  # like amax: shared evenly among the elements of largest magnitude
        (share,) = _even_share(g, [np.abs(x)], out, attrs)
        return (share * np.sign(x),)
    gx, nx = expand_back(g, x, attrs), expand_back(out, x, attrs)
    if p == 1:
        return (gx * np.sign(x),)
    with np.errstate(invalid="ignore", divide="ignore"):
        if p == 2:
            scale = np.where(nx == 0, 0, gx / nx)
            return (x * scale,)
        # torch's norm_backward: sgn(x)|x|^(p-1) for p < 2 (0 at x == 0, also when p < 1, where
        # the power is infinite there), x|x|^(p-2) above; the scale is 0 where the norm is 0
        if p < 1:
            scaled = np.where(x == 0, 0, np.sign(x) * np.abs(x) ** (p - 1))
            return (scaled * np.where(nx == 0, 0, gx * nx ** (1 - p)),)
        scale = np.where(nx == 0, 0, gx / nx ** (p - 1))
        if p < 2:
            return (np.sign(x) * np.abs(x) ** (p - 1) * scale,)
        return (x * np.abs(x) ** (p - 2) * scale,)


register("norm", infer=norm_infer, forward=_norm, backward=_norm_backward)


# ---------------------------------------------------------------------------------------------
# all/any (no gradient; bool outputs)


def bool_reduce_infer(specs, attrs):
    return TensorSpec(reduced(specs[0], attrs)[1], BOOL)


register("all", infer=bool_reduce_infer, backward=None, forward=_extreme(np.all))
register("any", infer=bool_reduce_infer, backward=None, forward=_extreme(np.any))
