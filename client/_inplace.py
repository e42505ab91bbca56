"""In-place ops, views and the version counter.

An in-place op records the out-of-place op and swaps its result into the tensor's storage; the
tensor's history becomes the new node and its version counter (shared with views and `detach()`)
goes up. A view re-derives its value from its base, and writing to a view writes through to the
base: by the inverse reshape/permutation, or by `index_put` for indexing views. With autograd on,
that write is recorded on the base as `CopySlices`, and the view's own grad_fn is rebuilt from
the base's (`AsStridedBackward0`), as PyTorch does.
"""

from __future__ import annotations

import weakref

import numpy as np

from . import _graph
from ._core import TensorCore, _View, apply
from ._ops import is_tensor, scalar
from .autograd.grad_mode import is_grad_enabled, is_inference_mode_enabled, no_grad

LEAF_INPLACE_ERROR = "a leaf Variable that requires grad is being used in an in-place operation."
VIEW_OF_LEAF_INPLACE_ERROR = ("a view of a leaf Variable that requires grad is being used in an in-place "
                              "operation.")
INFERENCE_INPLACE_ERROR = (
    "Inplace update to inference tensor outside InferenceMode is not allowed.You can make a clone to "
    "get a normal tensor before doing inplace update.See https://github.com/pytorch/rfcs/pull/17 for "
    "more details.")
OVERLAP_ERROR = ("unsupported operation: more than one element of the written-to tensor refers to a "
                 "single memory location. Please clone() the tensor before performing the operation.")

_RESHAPES = {"reshape", "flatten", "squeeze", "unsqueeze"}
_PERMUTES = {"permute", "transpose", "movedim"}


# ---------------------------------------------------------------------------------------------
# views


def make_view(base: TensorCore, op: str, attrs: dict, name: str) -> TensorCore:
    out = apply(op, [base], attrs, name)
    out._view = _View(base, op, attrs, out._expr)
    out._vc = base._vc
    out._inference = base._inference
    out._noncontiguous = _noncontiguous(out, base, op, attrs)
    return out


def _noncontiguous(out: TensorCore, base: TensorCore, op: str, attrs: dict) -> bool:
    """Whether a view's elements are out of row-major order (then reshape copies, view fails).

    Views carry their strides (derived from the base's, as PyTorch computes them); other tensors
    count as row-major. Records `out._strides` when the op is modelled.
    """
    strides = _view_strides(base, op, attrs, out)
    if strides is None:
        return base._noncontiguous
    out._strides = tuple(strides)
    return not _contiguous(strides, tuple(out.shape))


def _row_major(shape: tuple[int, ...]) -> list[int]:
    strides = [1] * len(shape)
    for k in range(len(shape) - 2, -1, -1):
        strides[k] = strides[k + 1] * max(shape[k + 1], 1)
    return strides


def _view_strides(base: TensorCore, op: str, attrs: dict, out: TensorCore) -> list[int] | None:
    shape = tuple(base.shape)
    st = list(base._strides) if base._strides is not None else _row_major(shape)
    if op in _PERMUTES:
        return [st[p] for p in _permutation(op, attrs, base.dim())]
    if op == "expand":
        new = out.dim() - base.dim()
        return [0] * new + [st[i] if shape[i] == out.shape[new + i] else 0 for i in range(base.dim())]
    if op == "getitem":
        return _getitem_strides(shape, st, attrs["index"])
    if op in ("split", "chunk"):
        return st
    if op == "unbind":
        d = attrs.get("dim", 0) % base.dim()
        return st[:d] + st[d + 1:]
    if op == "unsqueeze":
        d = attrs["dim"] % (base.dim() + 1)
        return st[:d] + [st[d] * shape[d] if d < base.dim() else 1] + st[d:]
    if op == "squeeze":
        dims = attrs.get("dim")
        if dims is None:
            drop = {i for i, n in enumerate(shape) if n == 1}
        else:
            dims = dims if isinstance(dims, tuple) else (dims,)
            drop = {d % max(base.dim(), 1) for d in dims if base.dim() and shape[d % base.dim()] == 1}
        return [x for i, x in enumerate(st) if i not in drop]
    if op in _RESHAPES:
        return compute_stride(shape, st, tuple(out.shape))
    return None


def view_strides(t: TensorCore) -> tuple[int, ...]:
    return t._strides if t._strides is not None else tuple(_row_major(tuple(t.shape)))


def compute_stride(old_shape: tuple[int, ...], old_strides, new_shape: tuple[int, ...]) -> list[int] | None:
    """The strides of a view of `new_shape`, or None if no view can have it (at::detail::
    computeStride: each run of dims that is contiguous in memory must split into whole new dims)."""
    if not old_shape:
        return [1] * len(new_shape)
    if 0 in old_shape:
        return _row_major(new_shape)
    new_strides = [0] * len(new_shape)
    view_d = len(new_shape) - 1
    chunk_base_stride = old_strides[-1]
    tensor_numel = view_numel = 1
    for tensor_d in range(len(old_shape) - 1, -1, -1):
        tensor_numel *= old_shape[tensor_d]
        if tensor_d == 0 or (old_shape[tensor_d - 1] != 1
                             and old_strides[tensor_d - 1] != tensor_numel * chunk_base_stride):
            while view_d >= 0 and (view_numel < tensor_numel or new_shape[view_d] == 1):
                new_strides[view_d] = view_numel * chunk_base_stride
                view_numel *= new_shape[view_d]
                view_d -= 1
            if view_numel != tensor_numel:
                return None
            if tensor_d > 0:
                chunk_base_stride = old_strides[tensor_d - 1]
                tensor_numel = view_numel = 1
    return new_strides if view_d == -1 else None


def _getitem_strides(shape: tuple[int, ...], strides: list[int], items: tuple) -> list[int]:
    """Strides of a basic-index view (ints drop a dim, slices multiply its stride by the step,
    None adds a size-1 dim)."""
    consumed = sum(1 for it in items if it is not None and it != "...")
    out: list[int] = []
    dim = 0
    for it in items:
        if it is None:
            out.append(0)
        elif it == "...":
            n = max(len(shape) - consumed, 0)
            out.extend(strides[dim:dim + n])
            dim += n
        elif isinstance(it, int):
            dim += 1
        else:
            out.append(strides[dim] * (it[3] or 1))
            dim += 1
    return out + strides[dim:]


def _contiguous(strides: list[int], shape: tuple[int, ...]) -> bool:
    """c10's is_contiguous: row-major strides, ignoring dims of size 1 (and empty tensors)."""
    if 0 in shape:
        return True
    expected = 1
    for size, stride in zip(reversed(shape), reversed(strides), strict=True):
        if size != 1:
            if stride != expected:
                return False
            expected *= size
    return True


def root_of(t: TensorCore) -> TensorCore:
    while t._view is not None:
        t = t._view.base
    return t


def _scatter(base: TensorCore, v: _View, new: TensorCore, name: str | None) -> TensorCore:
    """The base's value with the view region replaced by `new` (recorded as an op on both)."""
    if v.op in _RESHAPES:
        return apply("reshape", [new], {"shape": tuple(base.shape)}, name)
    if v.op in _PERMUTES:
        perm = _permutation(v.op, v.attrs, base.dim())
        inverse = tuple(int(i) for i in np.argsort(perm))
        return apply("permute", [new], {"dims": inverse}, name)
    if v.op == "getitem":
        return apply("index_put", [base, new], {"index": _region_index(v.attrs["index"], new)}, name)
    if v.op in ("split", "chunk", "unbind"):
        return apply("index_put", [base, new], {"index": _part_index(base, v)}, name)
    if v.op == "expand":
        raise RuntimeError(OVERLAP_ERROR)
    raise NotImplementedError(f"gradserve: writing through a {v.op} view is not supported")


def _region_index(items: tuple, new: TensorCore) -> tuple:
    """The index as a region of at least one dim: the engine's index_put writes through a NumPy
    view, and indexing every dim with ints gives a scalar instead of a view."""
    if new.dim() or not items or not isinstance(items[-1], int) or isinstance(items[-1], bool):
        return items
    k = items[-1]
    return items[:-1] + (("slice", k, k + 1 if k != -1 else None, None),)


def _permutation(op: str, attrs: dict, ndim: int) -> tuple[int, ...]:
    from gradserve.engine.ops.shape import permutation
    return permutation(attrs, ndim, op)


def _part_index(base: TensorCore, v: _View) -> tuple:
    from gradserve.engine.ops.shape import part_bounds
    dim = v.attrs.get("dim", 0) % base.dim()
    if v.op == "unbind":
        return (("slice", None, None, None),) * dim + (int(v.attrs["index"]),)
    _, start, stop = part_bounds(tuple(base.shape), v.attrs, v.op)
    return (("slice", None, None, None),) * dim + (("slice", start, stop, None),)


def write_through(view: TensorCore, expr: _graph.Expr) -> None:
    """Untracked write (no autograd), e.g. through `.data` or under no_grad."""
    from ._tensor import Tensor
    v = view._view
    new = Tensor._from_expr(expr)
    with no_grad():
        base_new = _scatter(v.base, v, new, None)
    v.base._set_value_expr(base_new._expr)
    v.base_expr = v.base._expr
    v.expr = expr


def regenerate_view_grad_fn(t: TensorCore):
    v = t._view
    base = v.base
    v.version = base._vc.value
    if base.requires_grad:
        out = apply(v.op, [base], v.attrs, "AsStridedBackward0", force=True)
        fn = out._grad_fn
        fn._tensor = weakref.ref(t)
        v.expr, v.base_expr = out._expr, base._expr
        t._grad_fn = fn
    else:
        t._grad_fn = None
    return t._grad_fn


# ---------------------------------------------------------------------------------------------
# committing an in-place result


def check_inplace(t: TensorCore) -> None:
    if t._inference and not is_inference_mode_enabled():
        raise RuntimeError(INFERENCE_INPLACE_ERROR)
    if not is_grad_enabled():
        return
    if t._view is not None:
        root = root_of(t)
        if root.is_leaf and root.requires_grad:
            raise RuntimeError(VIEW_OF_LEAF_INPLACE_ERROR)
    elif t.is_leaf and t.requires_grad:
        raise RuntimeError(LEAF_INPLACE_ERROR)


def commit(t: TensorCore, out: TensorCore, *, bump: bool = True) -> TensorCore:
    """Make `out` (computed out of place) the new value and history of `t`."""
    if out.dtype is not t.dtype:
        name = type(out.grad_fn).__name__ if out.grad_fn else None
        out = apply("cast", [out], {"dtype": t.dtype.name}, name)
    if tuple(out.shape) != tuple(t.shape):
        raise RuntimeError(f"output with shape {list(t.shape)} doesn't match the broadcast shape "
                           f"{list(out.shape)}")
    fn = out._grad_fn
    if fn is not None and fn._refs:
        # PyTorch's in-place ops keep a copy of self's old value when backward needs it
        # (y.sin_(), y.mul_(w)), so changing self is no error; self passed again (y.mul_(y)) is.
        fn._refs = tuple(r for r in fn._refs
                         if not (r.role == "input" and r.index == 0 and r.tensor() is t))
    v = t._view
    if v is None:
        t._storage.expr = out._expr
        if bump:
            t._vc.value += 1
        if fn is not None:
            t._grad_fn = fn
            fn._tensor = weakref.ref(t)
            for ref in fn._refs:
                if ref.role == "output":
                    ref.counter, ref.version, ref.tensor = t._vc, t._vc.value, weakref.ref(t)
        return t
    base = v.base
    track = is_grad_enabled() and (out.requires_grad or base.requires_grad)
    base_new = _scatter(base, v, out, "CopySlices" if track else None)
    commit(base, base_new, bump=False)
    if bump:
        t._vc.value += 1
    v.base_expr, v.expr = base._expr, out._expr
    if track or t._grad_fn is not None:
        v.version = -1                     # rebuild this view's grad_fn from the base's
    return t


def _constant_like(t: TensorCore, value) -> TensorCore:
    from ._tensor import Tensor
    return Tensor._from_array(np.full(tuple(t.shape), value, dtype=t._expr.spec.dtype))


def _fill(t: TensorCore, value, name: str) -> TensorCore:
    """fill_/zero_: history is cut (the gradient to the old value is zero)."""
    check_inplace(t)
    if is_tensor(value):
        if value.dim() != 0:
            raise RuntimeError(f"fill_ only supports 0-dimension value tensor but got tensor with "
                               f"{value.dim()} dimensions.")
        if value.requires_grad or t.requires_grad:
            out = apply("expand", [value.to(t.dtype)], {"shape": tuple(t.shape)}, "FillBackward1")
            return commit(t, out)
        value = value.item()
    if t.requires_grad and is_grad_enabled():
        out = apply("index_put", [t], {"index": ("...",), "value": scalar(value)}, name)
        return commit(t, out)
    return commit(t, _constant_like(t, value))


class InPlaceOps:
    """The in-place methods of Tensor."""

    def _inplace(self, out_of_place, *args, **kwargs):
        check_inplace(self)
        return commit(self, out_of_place(self, *args, **kwargs))

    def add_(self, other, *, alpha=1):
        return self._inplace(type(self).add, other, alpha=alpha)

    def sub_(self, other, *, alpha=1):
        return self._inplace(type(self).sub, other, alpha=alpha)

    def mul_(self, other):
        return self._inplace(type(self).mul, other)

    def div_(self, other, *, rounding_mode=None):
        return self._inplace(type(self).div, other, rounding_mode=rounding_mode)

    def pow_(self, exponent):
        return self._inplace(type(self).pow, exponent)

    def neg_(self):
        return self._inplace(type(self).neg)

    def clamp_(self, min=None, max=None):
        return self._inplace(type(self).clamp, min, max)

    clip_ = clamp_

    def clamp_min_(self, min):
        return self._inplace(type(self).clamp_min, min)

    def clamp_max_(self, max):
        return self._inplace(type(self).clamp_max, max)

    def masked_fill_(self, mask, value):
        return self._inplace(type(self).masked_fill, mask, value)

    def relu_(self):
        return self._inplace(type(self).relu)

    def zero_(self):
        return _fill(self, 0, "ZeroBackward0")

    def fill_(self, value):
        return _fill(self, value, "FillBackward0")

    def copy_(self, src, non_blocking=False):
        check_inplace(self)
        if not is_tensor(src):
            raise TypeError(f"copy_(): argument 'other' must be Tensor, not {type(src).__name__}")
        if src.requires_grad and is_grad_enabled():
            out = apply("expand", [src.to(self.dtype)], {"shape": tuple(self.shape)}, "CopyBackwards")
        elif self.requires_grad and is_grad_enabled():
            out = apply("index_put", [self, src.to(self.dtype)], {"index": ("...",)}, "CopyBackwards")
        else:
            with no_grad():
                out = src.to(self.dtype).expand(self.shape).clone()
        return commit(self, out)

    def normal_(self, mean=0.0, std=1.0, *, generator=None):
        from ._factories import _rng
        check_inplace(self)
        value = _rng().normal(mean, std, tuple(self.shape)).astype(self._expr.spec.dtype)
        return commit(self, type(self)._from_array(value))

    def uniform_(self, from_=0.0, to=1.0, *, generator=None):
        from ._factories import _rng
        check_inplace(self)
        value = _rng().uniform(from_, to, tuple(self.shape)).astype(self._expr.spec.dtype)
        return commit(self, type(self)._from_array(value))

    def __iadd__(self, other):
        return self.add_(other)

    def __isub__(self, other):
        return self.sub_(other)

    def __imul__(self, other):
        return self.mul_(other)

    def __itruediv__(self, other):
        return self.div_(other)


_UNARY_INPLACE = ["exp", "log", "sqrt", "rsqrt", "reciprocal", "sin", "cos", "tanh", "sigmoid", "abs",
                  "sign", "floor", "ceil", "round", "trunc", "log1p", "expm1", "square"]


def _unary_inplace(name: str):
    def method(self):
        return self._inplace(getattr(type(self), name))
    method.__name__ = name + "_"
    return method


for _n in _UNARY_INPLACE:
    setattr(InPlaceOps, _n + "_", _unary_inplace(_n))
