"""The matmul family: matmul (1-D, 2-D, batched, broadcast), mm, bmm, mv, dot, outer, linear,
addmm. Operands must share a dtype, as in PyTorch. Backward returns gradients in the broadcast
batch shape; the executor sums them back to each operand's shape.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..dtypes import TORCH_NAMES, result_type
from ..errors import DTypeError, ShapeError
from ..graph import TensorSpec
from ..registry import INPUTS, attr, broadcast_shapes, register


def _same_dtype(specs: Sequence[TensorSpec]) -> np.dtype:
    dtype = specs[0].dtype
    for s in specs[1:]:
        if s.dtype != dtype:
            raise DTypeError(f"expected m1 and m2 to have the same dtype, but got: "
                             f"{TORCH_NAMES[dtype.name].lower()} != "
                             f"{TORCH_NAMES[s.dtype.name].lower()}")
    if dtype.kind == "b":
        raise DTypeError("matmul is not implemented for 'Bool'")
    return dtype


def _mm_error(rows: int, k: int, n: int, p: int) -> ShapeError:
    return ShapeError(f"mat1 and mat2 shapes cannot be multiplied ({rows}x{k} and {n}x{p})")


def _mv_error(rows: int, k: int, n: int) -> ShapeError:
    return ShapeError(f"size mismatch, got input ({rows}), mat ({rows}x{k}), vec ({n})")


def _dot_error(n1: int, n2: int) -> ShapeError:
    return ShapeError(f"inconsistent tensor size, expected tensor [{n1}] and src [{n2}] to have the same "
                      f"number of elements, but got {n1} and {n2} elements respectively")


def _bmm_error(batch: int, k: int, b0: int, b1: int) -> ShapeError:
    return ShapeError(f"Expected size for first two dimensions of batch2 tensor to be: [{batch}, {k}] "
                      f"but got: [{b0}, {b1}].")


def _dot_dtypes(a: TensorSpec, b: TensorSpec) -> None:
    if a.dtype != b.dtype:
        raise DTypeError(f"dot : expected both vectors to have same dtype, but found "
                         f"{TORCH_NAMES[a.dtype.name]} and {TORCH_NAMES[b.dtype.name]}")


def _mismatch(a: TensorSpec, b: TensorSpec) -> ShapeError:
    """PyTorch's error for operands matmul cannot multiply, following at::matmul's dispatch: dot,
    mv, mm, a batch folded into mm/mv (a >= 3-D by a 1-D/2-D operand), else broadcast + bmm."""
    da, db = a.ndim, b.ndim
    if da == 1 and db == 1:
        return _dot_error(a.shape[0], b.shape[0])
    if da >= 2 and db == 1:
        rows = math.prod(a.shape[:-1])
        return _mv_error(rows, a.shape[-1], b.shape[0])
    if db == 2:
        rows = math.prod(a.shape[:-1])
        return _mm_error(rows, a.shape[-1], *b.shape)
    batch_a = a.shape[:-2] if da >= 2 else ()
    batch = broadcast_shapes(batch_a, b.shape[:-2])   # raises PyTorch's size-mismatch error first
    return _bmm_error(math.prod(batch), a.shape[-1], math.prod(batch), b.shape[-2])


# PyTorch's rank checks of the fixed-rank forms, per op and operand.
_RANK_ERRORS = {
    "mm": ("self must be a matrix", "mat2 must be a matrix"),
    "bmm": ("batch1 must be a 3D tensor", "batch2 must be a 3D tensor"),
    "addmm": ("mat1 must be a matrix, got {}-D tensor", "mat2 must be a matrix, got {}-D tensor"),
}


def _require_ndim(specs: Sequence[TensorSpec], ndims: Sequence[int], op: str) -> None:
    if op == "mv" and (specs[0].ndim, specs[1].ndim) != (2, 1):
        raise ShapeError(f"vector + matrix @ vector expected, got 1, {specs[0].ndim}, {specs[1].ndim}")
    if op == "dot" and (specs[0].ndim, specs[1].ndim) != (1, 1):
        raise ShapeError(f"1D tensors expected, but got {specs[0].ndim}D and {specs[1].ndim}D tensors")
    for i, (s, n) in enumerate(zip(specs, ndims, strict=True)):
        if s.ndim != n:
            if op == "outer":
                raise ShapeError(f"outer: Expected 1-D argument {('self', 'vec2')[i]}, but got {s.ndim}-D")
            if op in _RANK_ERRORS:
                raise ShapeError(_RANK_ERRORS[op][i].format(s.ndim))
            raise ShapeError(f"{op}: expected a {n}-D tensor, got shape {s.shape}")


def swap(m: np.ndarray) -> np.ndarray:
    return np.swapaxes(m, -1, -2)


# ---------------------------------------------------------------------------------------------
# matmul and its fixed-rank forms


def matmul_infer(specs, attrs):
    a, b = specs
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"both arguments to matmul need to be at least 1D, but they are "
                         f"{a.ndim}D and {b.ndim}D")
    if a.ndim == 1 and b.ndim == 1:   # dot: dtypes are checked before sizes, elsewhere after
        _dot_dtypes(a, b)
    a2 = (1,) + a.shape if a.ndim == 1 else a.shape
    b2 = b.shape + (1,) if b.ndim == 1 else b.shape
    try:
        batch = broadcast_shapes(a2[:-2], b2[:-2])
    except ShapeError:
        raise _mismatch(a, b) from None
    if a2[-1] != b2[-2]:
        raise _mismatch(a, b)
    rows = (a2[-2],) if a.ndim > 1 else ()
    cols = (b2[-1],) if b.ndim > 1 else ()
    return TensorSpec(batch + rows + cols, _same_dtype(specs))


def _matmul_backward(g, xs, out, attrs, needs_input_grad=(True, True)):
    a, b = xs
    need_a, need_b = needs_input_grad
    if a.ndim == 1 and b.ndim == 1:
        return g * b, g * a
    if a.ndim >= 2 and b.ndim == 2:  # fold the batch into rows: one GEMM per gradient
        k, m = b.shape
        return (g @ b.T if need_a else None,
                a.reshape(-1, k).T @ g.reshape(-1, m) if need_b else None)
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    g2 = g
    if a.ndim == 1:
        g2 = np.expand_dims(g2, -2)
    if b.ndim == 1:
        g2 = np.expand_dims(g2, -1)
    ga = g2 @ swap(b2) if need_a else None
    gb = swap(a2) @ g2 if need_b else None
    if a.ndim == 1 and need_a:
        ga = ga[..., 0, :]
    if b.ndim == 1 and need_b:
        gb = gb[..., 0]
    return ga, gb


register("matmul", arity=2, infer=matmul_infer, backward=_matmul_backward, saves=(INPUTS,),
         masks_inputs=True, forward=lambda xs, attrs: np.matmul(xs[0], xs[1]))


def _fixed_rank(op: str, ndims: tuple[int, int]):
    def infer(specs, attrs):
        _require_ndim(specs, ndims, op)
        a, b = specs
        if op == "bmm" and (a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]):
            raise _bmm_error(a.shape[0], a.shape[2], b.shape[0], b.shape[1])
        return matmul_infer(specs, attrs)
    return infer


for _op, _ndims in [("mm", (2, 2)), ("bmm", (3, 3)), ("mv", (2, 1)), ("dot", (1, 1))]:
    register(_op, arity=2, infer=_fixed_rank(_op, _ndims), backward=_matmul_backward,
             saves=(INPUTS,), masks_inputs=True, forward=lambda xs, attrs: np.matmul(xs[0], xs[1]))


def outer_infer(specs, attrs):
    _require_ndim(specs, (1, 1), "outer")
    # outer is a broadcasting mul in PyTorch: its operands promote (float32 x float64 -> float64)
    return TensorSpec((specs[0].shape[0], specs[1].shape[0]), result_type(specs))


register("outer", arity=2, infer=outer_infer, saves=(INPUTS,),
         forward=lambda xs, attrs: np.outer(xs[0], xs[1]),
         backward=lambda g, xs, out, attrs: (g @ xs[1], g.T @ xs[0]))


# ---------------------------------------------------------------------------------------------
# linear (x @ W.T + b) and addmm (beta * bias + alpha * m1 @ m2)


def linear_infer(specs, attrs):
    x, w = specs[0], specs[1]
    if w.ndim != 2 or x.ndim == 0:
        raise ShapeError(f"shapes {x.shape} and {w.shape[::-1]} cannot be multiplied")
    if x.shape[-1] != w.shape[1]:
        raise _mm_error(math.prod(x.shape[:-1]), x.shape[-1], w.shape[1], w.shape[0])
    shape = x.shape[:-1] + (w.shape[0],)
    if len(specs) == 3 and not _expands_to(specs[2].shape, shape):
        raise ShapeError(_expand_error(specs[2].shape, shape))
    return TensorSpec(shape, _same_dtype(specs))


def _expands_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    return len(shape) <= len(target) and all(
        s in (1, t) for s, t in zip(shape[::-1], target[::-1], strict=False))


def _expand_error(shape: tuple[int, ...], target: tuple[int, ...]) -> str:
    """PyTorch's expand error for a bias that does not broadcast to the output."""
    for i in range(1, len(shape) + 1):
        if shape[-i] != 1 and (i > len(target) or shape[-i] != target[-i]):
            dim = len(target) - i
            return (f"The expanded size of the tensor ({target[-i] if i <= len(target) else -1}) must match "
                    f"the existing size ({shape[-i]}) at non-singleton dimension {dim}.  Target sizes: "
                    f"{list(target)}.  Tensor sizes: {list(shape)}")
    return f"bias of shape {shape} does not broadcast to {target}"


def _linear(xs, attrs):
    out = xs[0] @ xs[1].T
    if len(xs) == 3:
        out += xs[2]   # a fresh array: adding in place saves one temporary
    return out


def _linear_backward(g, xs, out, attrs, needs_input_grad=(True, True, True)):
    x, w = xs[0], xs[1]
    gx = g @ w if needs_input_grad[0] else None
    gw = g.reshape(-1, g.shape[-1]).T @ x.reshape(-1, x.shape[-1]) if needs_input_grad[1] else None
    return (gx, gw) + ((g,) if len(xs) == 3 else ())


register("linear", arity=(2, 3), infer=linear_infer, forward=_linear, backward=_linear_backward,
         saves=(0, 1), masks_inputs=True)


def addmm_infer(specs, attrs):
    bias, m1, m2 = specs
    _require_ndim(specs[1:], (2, 2), "addmm")
    spec = matmul_infer([m1, m2], attrs)
    _same_dtype(specs)
    if broadcast_shapes(bias.shape, spec.shape) != spec.shape:
        raise ShapeError(f"bias of shape {bias.shape} does not broadcast to {spec.shape}")
    attr(attrs, "beta", (int, float), 1)
    attr(attrs, "alpha", (int, float), 1)
    return spec


def _addmm(xs, attrs):
    bias, m1, m2 = xs
    beta, alpha = attr(attrs, "beta", (int, float), 1), attr(attrs, "alpha", (int, float), 1)
    out = m1 @ m2
    if alpha != 1:
        out *= alpha
    if beta != 0:  # beta == 0 ignores bias entirely (even NaN), as torch documents
        out += bias if beta == 1 else beta * bias
    return out


def _addmm_backward(g, xs, out, attrs, needs_input_grad=(True, True, True)):
    _, m1, m2 = xs
    beta, alpha = attr(attrs, "beta", (int, float), 1), attr(attrs, "alpha", (int, float), 1)
    ga = g if alpha == 1 else alpha * g
    _, need_m1, need_m2 = needs_input_grad
    return ((g if beta == 1 else beta * g), ga @ m2.T if need_m1 else None,
            m1.T @ ga if need_m2 else None)


register("addmm", arity=3, infer=addmm_infer, forward=_addmm, backward=_addmm_backward,
         saves=(1, 2), masks_inputs=True)
