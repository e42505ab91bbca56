"""Tensor op methods: arithmetic, math, reductions, shapes, joins and matmul.

Each method records one engine op (see the docstrings in gradserve.engine.ops for names and
attributes) with the grad_fn name PyTorch gives that Python call; the names depend on how the
op was called (`a.sum()` SumBackward0 but `a.sum(0)` SumBackward1), so they live here.
"""

from __future__ import annotations

import collections
import math
import numbers
import warnings
from typing import Any

import numpy as np

from . import _dtypes
from ._core import TensorCore, apply

_MISSING: Any = object()
Scalar = (bool, int, float, np.bool_, np.integer, np.floating)


def is_tensor(x) -> bool:
    return isinstance(x, TensorCore)


def scalar(x):
    """A Python scalar operand (NumPy scalars become Python ones), or None if `x` is not one."""
    if isinstance(x, (bool, int, float)):
        return x
    if isinstance(x, (np.bool_, np.integer, np.floating)):
        return x.item()
    if isinstance(x, numbers.Number) and not isinstance(x, complex):
        return float(x)
    return None


def _check_broadcast(a, b) -> None:
    sa, sb = tuple(a.shape), tuple(b.shape)
    for i in range(1, min(len(sa), len(sb)) + 1):
        x, y = sa[-i], sb[-i]
        if x != y and x != 1 and y != 1:
            dim = max(len(sa), len(sb)) - i
            raise RuntimeError(f"The size of tensor a ({x}) must match the size of tensor b ({y}) "
                               f"at non-singleton dimension {dim}")


def binary(op: str, a, other, name: str | None, **attrs):
    """`a op other` with other a tensor (two inputs) or a Python scalar (attrs["other"])."""
    attrs = {k: v for k, v in attrs.items() if v is not None}
    if is_tensor(other):
        _check_broadcast(a, other)
        saved = None
        if op == "mul":
            # torch saves each factor only for the other one's gradient.
            saved = (other.requires_grad, a.requires_grad)
        return apply(op, [a, other], attrs, name, saved=saved)
    s = scalar(other)
    if s is None:
        raise TypeError(f"{op}(): argument 'other' must be Tensor or Number, not {type(other).__name__}")
    attrs["other"] = s
    return apply(op, [a], attrs, name)


def _check_index_values(t, dim, index, op: str) -> None:
    """PyTorch checks index values eagerly; so do we when they are known (lazy ones are checked
    by the executor)."""
    values = index._expr.value if is_tensor(index) else None
    if values is None or values.size == 0 or not t.dim():
        return
    d = int(dim) % t.dim()
    size = t.shape[d]
    bad = (values < 0) | (values >= size)
    if not bad.any():
        return
    first = values[bad].flat[0]
    if op == "gather":
        raise RuntimeError(f"index {first} is out of bounds for dimension {d} with size {size}")
    if d == 0:
        raise IndexError("index out of range in self")
    raise RuntimeError(f"INDICES element is out of DATA bounds, id={first} axis_dim={size}")


_WARNED: set[str] = set()


def _warn_once(key: str) -> bool:
    if key in _WARNED:
        return False
    _WARNED.add(key)
    return True


def _not_differentiable(out, aten: str):
    """`out` was recorded with torch's `NotImplemented` grad_fn: backward through it raises
    naming the aten op."""
    if out._grad_fn is not None:
        out._grad_fn._aten = aten
    return out


def dims_attr(dim):
    if dim is None:
        return None
    if isinstance(dim, (list, tuple)):
        return tuple(int(d) for d in dim)
    return int(dim)


def _sizes(args) -> tuple[int, ...]:
    """`f(2, 3)` and `f((2, 3))` both mean the sizes (2, 3)."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = args[0]
    return tuple(int(s) for s in args)


def _dtype_name(dtype) -> str:
    return _dtypes.to_numpy(dtype).name


def namedtuple_type(name: str, fields=("values", "indices")):
    base = collections.namedtuple(name, fields)

    def __repr__(self) -> str:
        body = ",\n".join(f"{f}={v!r}" for f, v in zip(fields, self, strict=True))
        return f"torch.return_types.{name}(\n{body})"
    return type(name, (base,), {"__repr__": __repr__, "__slots__": ()})


MaxResult = namedtuple_type("max")
MinResult = namedtuple_type("min")
SortResult = namedtuple_type("sort")
TopkResult = namedtuple_type("topk")


class TensorOps:
    """The op methods of Tensor (mixed into the class in `_tensor`)."""

    # ----- arithmetic ------------------------------------------------------------------------

    def add(self, other, *, alpha=1):
        return binary("add", self, other, "AddBackward0", alpha=None if alpha == 1 else alpha)

    def sub(self, other, *, alpha=1):
        return binary("sub", self, other, "SubBackward0", alpha=None if alpha == 1 else alpha)

    subtract = sub

    def rsub(self, other, *, alpha=1):
        if is_tensor(other):
            return binary("sub", other, self, "RsubBackward0", alpha=None if alpha == 1 else alpha)
        return binary("rsub", self, other, "RsubBackward1", alpha=None if alpha == 1 else alpha)

    def mul(self, other):
        return binary("mul", self, other, "MulBackward0")

    multiply = mul

    def div(self, other, *, rounding_mode=None):
        if rounding_mode is not None:
            return binary("div", self, other, "DivBackward2", rounding_mode=rounding_mode)
        return binary("div", self, other, "DivBackward0")

    divide = true_divide = div

    def pow(self, exponent):
        if is_tensor(exponent):
            return binary("pow", self, exponent, "PowBackward1")
        return binary("pow", self, exponent, "PowBackward0")

    def neg(self):
        return apply("neg", [self], None, "NegBackward0")

    negative = neg

    def __add__(self, other):
        return self.add(other) if scalar(other) is not None or is_tensor(other) else NotImplemented

    __radd__ = __add__

    def __sub__(self, other):
        return self.sub(other) if scalar(other) is not None or is_tensor(other) else NotImplemented

    def __rsub__(self, other):
        return self.rsub(other) if scalar(other) is not None else NotImplemented

    def __mul__(self, other):
        return self.mul(other) if scalar(other) is not None or is_tensor(other) else NotImplemented

    __rmul__ = __mul__

    def __truediv__(self, other):
        return self.div(other) if scalar(other) is not None or is_tensor(other) else NotImplemented

    def __rtruediv__(self, other):
        s = scalar(other)
        if s is None:
            return NotImplemented
        return binary("mul", self.reciprocal(), s, "MulBackward0")

    def floor_divide(self, other):
        """Rounds toward -inf; like torch, it has no derivative (grad_fn NotImplemented)."""
        if scalar(other) is None and not is_tensor(other):
            raise TypeError(f"floor_divide(): argument 'other' must be Tensor or Number, not "
                            f"{type(other).__name__}")
        return _not_differentiable(binary("div", self, other, "NotImplemented", rounding_mode="floor"),
                                   "floor_divide")

    def __floordiv__(self, other):
        if scalar(other) is None and not is_tensor(other):
            return NotImplemented
        return self.floor_divide(other)

    def __rfloordiv__(self, other):
        s = scalar(other)
        if s is None:
            return NotImplemented
        return self.new_full(self.shape, s).floor_divide(self)

    def remainder(self, other):
        """Python's `%`: the sign of the divisor. d/d other is -floor(self / other)."""
        return self._modulo("remainder", other, f"RemainderBackward{int(is_tensor(other))}")

    def fmod(self, other):
        """C's fmod: the sign of the dividend. d/d other is -trunc(self / other)."""
        return self._modulo("fmod", other, f"FmodBackward{int(is_tensor(other))}")

    def _modulo(self, op: str, other, name: str):
        if scalar(other) is None and not is_tensor(other):
            raise TypeError(f"{op}(): argument 'other' must be Tensor or Number, not "
                            f"{type(other).__name__}")
        return binary(op, self, other, name)

    def __mod__(self, other):
        if scalar(other) is None and not is_tensor(other):
            return NotImplemented
        return self.remainder(other)

    def __rmod__(self, other):
        s = scalar(other)
        if s is None:
            return NotImplemented
        return _not_differentiable(self.new_full(self.shape, s)._modulo("remainder", self, "NotImplemented"),
                                   "remainder")

    def __pow__(self, exponent):
        return self.pow(exponent) if scalar(exponent) is not None or is_tensor(exponent) else NotImplemented

    def __rpow__(self, base):
        s = scalar(base)
        if s is None:
            return NotImplemented
        return apply("rpow", [self], {"other": s}, "PowBackward2")

    def __neg__(self):
        return self.neg()

    def __pos__(self):
        return self

    def __abs__(self):
        return self.abs()

    def __matmul__(self, other):
        return self.matmul(other) if is_tensor(other) else NotImplemented

    def __rmatmul__(self, other):
        return other.matmul(self) if is_tensor(other) else NotImplemented

    # ----- comparisons and logic (no gradient) ------------------------------------------------

    def eq(self, other):
        return binary("eq", self, other, None)

    def ne(self, other):
        return binary("ne", self, other, None)

    def lt(self, other):
        return binary("lt", self, other, None)

    def le(self, other):
        return binary("le", self, other, None)

    def gt(self, other):
        return binary("gt", self, other, None)

    def ge(self, other):
        return binary("ge", self, other, None)

    less, less_equal, greater, greater_equal, not_equal = lt, le, gt, ge, ne

    def _cmp(op):
        def method(self, other):
            if scalar(other) is None and not is_tensor(other):
                return NotImplemented
            return binary(op, self, other, None)
        return method

    __eq__ = _cmp("eq")
    __ne__ = _cmp("ne")
    __lt__ = _cmp("lt")
    __le__ = _cmp("le")
    __gt__ = _cmp("gt")
    __ge__ = _cmp("ge")
    __hash__ = object.__hash__

    def logical_and(self, other):
        return binary("logical_and", self, other, None)

    def logical_or(self, other):
        return binary("logical_or", self, other, None)

    def logical_xor(self, other):
        return binary("logical_xor", self, other, None)

    def logical_not(self):
        return apply("logical_not", [self])

    __and__ = __rand__ = _cmp("logical_and")
    __or__ = __ror__ = _cmp("logical_or")
    __xor__ = __rxor__ = _cmp("logical_xor")

    def __invert__(self):
        if self.dtype is not _dtypes.bool_:
            raise NotImplementedError("gradserve: bitwise not is only supported on bool tensors")
        return self.logical_not()

    del _cmp

    def isnan(self):
        return apply("isnan", [self])

    def isinf(self):
        return apply("isinf", [self])

    def isfinite(self):
        return apply("isfinite", [self])

    def maximum(self, other):
        _check_broadcast(self, other)
        return apply("maximum", [self, other], None, "MaximumBackward0")

    def minimum(self, other):
        _check_broadcast(self, other)
        return apply("minimum", [self, other], None, "MinimumBackward0")

    def where(self, condition, other):
        from ._functions import where
        return where(condition, self, other)

    # ----- unary math ---------------------------------------------------------------------

    def square(self):
        return apply("square", [self], None, "PowBackward0")

    def round(self, *, decimals: int = 0):
        return apply("round", [self], {"decimals": decimals} if decimals else None,
                     "RoundBackward1" if decimals else "RoundBackward0")

    def clamp(self, min=None, max=None):
        if min is None and max is None:
            raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
        if is_tensor(min) or is_tensor(max):
            tensors = [self] + [t for t in (min, max) if t is not None]
            attrs = {"has_min": min is not None, "has_max": max is not None}
            return apply("clamp_tensor", tensors, attrs, "ClampBackward0")
        return apply("clamp", [self], {"min": min, "max": max}, "ClampBackward1")

    clip = clamp

    def clamp_min(self, min):
        return apply("clamp_min", [self], {"min": min}, "ClampMinBackward0")

    def clamp_max(self, max):
        return apply("clamp_max", [self], {"max": max}, "ClampMaxBackward0")

    # ----- reductions ----------------------------------------------------------------------

    def sum(self, dim=_MISSING, keepdim=False, *, dtype=None):
        attrs: dict = {"dtype": _dtype_name(dtype)} if dtype is not None else {}
        if dim is _MISSING:
            return apply("sum", [self], attrs, "SumBackward0")
        attrs.update(dim=dims_attr(dim), keepdim=bool(keepdim))
        return apply("sum", [self], attrs, "SumBackward1")

    def mean(self, dim=_MISSING, keepdim=False, *, dtype=None):
        attrs: dict = {"dtype": _dtype_name(dtype)} if dtype is not None else {}
        if dim is _MISSING:
            return apply("mean", [self], attrs, "MeanBackward0")
        attrs.update(dim=dims_attr(dim), keepdim=bool(keepdim))
        return apply("mean", [self], attrs, "MeanBackward1")

    def prod(self, dim=None, keepdim=False, *, dtype=None):
        attrs: dict = {"dtype": _dtype_name(dtype)} if dtype is not None else {}
        if dim is None:
            return apply("prod", [self], attrs, "ProdBackward0")
        attrs.update(dim=int(dim), keepdim=bool(keepdim))
        return apply("prod", [self], attrs, "ProdBackward1")

    def _var_attrs(self, dim, unbiased, keepdim, correction) -> dict:
        if isinstance(dim, bool):            # var(False): the old positional `unbiased`
            dim, unbiased = None, dim
        attrs: dict = {"dim": dims_attr(dim), "keepdim": bool(keepdim)}
        if correction is not None:
            attrs["correction"] = float(correction)
        elif unbiased is not None:
            attrs["unbiased"] = bool(unbiased)
        return attrs

    def var(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
        return apply("var", [self], self._var_attrs(dim, unbiased, keepdim, correction), "VarBackward0")

    def std(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
        return apply("std", [self], self._var_attrs(dim, unbiased, keepdim, correction), "StdBackward0")

    def _extreme(self, which: str, dim, keepdim, result):
        if dim is None:
            return apply(which, [self], None, f"{which.title()}Backward1")
        if is_tensor(dim):
            return self.maximum(dim) if which == "max" else self.minimum(dim)
        attrs = {"dim": int(dim), "keepdim": bool(keepdim)}
        values = apply(f"{which}_dim", [self], attrs, f"{which.title()}Backward0")
        indices = apply(f"arg{which}", [self], attrs)
        return result(values, indices)

    def max(self, dim=None, keepdim=False):
        return self._extreme("max", dim, keepdim, MaxResult)

    def min(self, dim=None, keepdim=False):
        return self._extreme("min", dim, keepdim, MinResult)

    def amax(self, dim=(), keepdim=False):
        return apply("amax", [self], {"dim": dims_attr(dim), "keepdim": bool(keepdim)}, "AmaxBackward0")

    def amin(self, dim=(), keepdim=False):
        return apply("amin", [self], {"dim": dims_attr(dim), "keepdim": bool(keepdim)}, "AminBackward0")

    def argmax(self, dim=None, keepdim=False):
        return apply("argmax", [self], {"dim": dim, "keepdim": bool(keepdim)})

    def argmin(self, dim=None, keepdim=False):
        return apply("argmin", [self], {"dim": dim, "keepdim": bool(keepdim)})

    def logsumexp(self, dim, keepdim=False):
        return apply("logsumexp", [self], {"dim": dims_attr(dim), "keepdim": bool(keepdim)},
                     "LogsumexpBackward0")

    def norm(self, p="fro", dim=None, keepdim=False, dtype=None):
        if p is None:
            p = "fro"
        attrs = {"p": p if isinstance(p, str) else float(p), "dim": dims_attr(dim),
                 "keepdim": bool(keepdim)}
        return apply("norm", [self], attrs, "LinalgVectorNormBackward0")

    def all(self, dim=None, keepdim=False):
        return apply("all", [self], {"dim": dims_attr(dim), "keepdim": bool(keepdim)})

    def any(self, dim=None, keepdim=False):
        return apply("any", [self], {"dim": dims_attr(dim), "keepdim": bool(keepdim)})

    # ----- matmul family ------------------------------------------------------------------

    def matmul(self, other):
        a, b = self.dim(), other.dim()
        if a == 0 or b == 0:
            raise RuntimeError(f"both arguments to matmul need to be at least 1D, but they are "
                               f"{a}D and {b}D")
        name = {(1, 1): "DotBackward0", (2, 1): "MvBackward0", (2, 2): "MmBackward0",
                (1, 2): "SqueezeBackward4"}.get((a, b), "UnsafeViewBackward0")
        if a == 2 and b >= 3 and self.requires_grad:
            # at::matmul folds to (b.mT @ a.T).mT.contiguous() when the matrix needs a gradient;
            # contiguous() copies unless one of the two result dims is 1.
            name = "TransposeBackward0" if 1 in (self.shape[0], other.shape[-1]) else "CloneBackward0"
        return apply("matmul", [self, other], None, name)

    def mm(self, mat2):
        return apply("mm", [self, mat2], None, "MmBackward0")

    def bmm(self, mat2):
        return apply("bmm", [self, mat2], None, "BmmBackward0")

    def mv(self, vec):
        return apply("mv", [self, vec], None, "MvBackward0")

    def dot(self, other):
        return apply("dot", [self, other], None, "DotBackward0")

    def outer(self, vec2):
        return apply("outer", [self, vec2], None, "MulBackward0")

    ger = outer

    # ----- shapes ------------------------------------------------------------------------

    def _view_op(self, op: str, attrs: dict, name: str):
        """Record a view: the result follows in-place changes of `self` (and writes through)."""
        from ._inplace import make_view
        return make_view(self, op, attrs, name)

    def reshape(self, *shape):
        if self.is_contiguous():
            return self._view_op("reshape", {"shape": _sizes(shape)}, "ViewBackward0")
        if self._view_strides_for(_sizes(shape)) is not None:
            return self._view_op("reshape", {"shape": _sizes(shape)}, "ReshapeAliasBackward0")
        return apply("reshape", [self], {"shape": _sizes(shape)}, "UnsafeViewBackward0")

    def view(self, *shape):
        if len(shape) == 1 and not isinstance(shape[0], (int, tuple, list, np.integer)):
            return self.to(shape[0])
        if not self.is_contiguous() and self._view_strides_for(_sizes(shape)) is None:
            raise RuntimeError("view size is not compatible with input tensor's size and stride (at least "
                               "one dimension spans across two contiguous subspaces). Use .reshape(...) "
                               "instead.")
        return self._view_op("reshape", {"shape": _sizes(shape)}, "ViewBackward0")

    def _view_strides_for(self, shape: tuple[int, ...]):
        """The strides a view of this tensor with `shape` would have, or None if it needs a copy
        (`()` for a shape the op will reject)."""
        from ._inplace import compute_stride, view_strides
        known = [d for d in shape if d != -1]
        n = self.numel()
        if -1 in shape:
            rest = math.prod(known)
            shape = tuple(n // rest if d == -1 and rest else d for d in shape)
        if math.prod(shape) != n:
            return ()              # not a valid shape: the op's own check reports it
        return compute_stride(tuple(self.shape), view_strides(self), shape)

    def view_as(self, other):
        return self.view(other.shape)

    def reshape_as(self, other):
        return self.reshape(other.shape)

    def flatten(self, start_dim=0, end_dim=-1):
        if self.dim() == 0:
            return self.reshape(1)
        s, e = start_dim % self.dim(), end_dim % self.dim()
        if s == e:
            return self
        if not self.is_contiguous():
            shape = self.shape
            return self.reshape(*shape[:s], math.prod(shape[s:e + 1]), *shape[e + 1:])
        return self._view_op("flatten", {"start_dim": start_dim, "end_dim": end_dim}, "ViewBackward0")

    def unflatten(self, dim, sizes):
        shape = list(self.shape)
        d = dim % self.dim()
        return self.reshape(shape[:d] + list(sizes) + shape[d + 1:])

    def squeeze(self, dim=_MISSING):
        if dim is _MISSING:
            return self._view_op("squeeze", {}, "SqueezeBackward0")
        if isinstance(dim, (tuple, list)):
            return self._view_op("squeeze", {"dim": tuple(dim)}, "SqueezeBackward2")
        return self._view_op("squeeze", {"dim": int(dim)}, "SqueezeBackward1")

    def unsqueeze(self, dim):
        return self._view_op("unsqueeze", {"dim": int(dim)}, "UnsqueezeBackward0")

    def permute(self, *dims):
        return self._view_op("permute", {"dims": _sizes(dims)}, "PermuteBackward0")

    def transpose(self, dim0, dim1):
        return self._view_op("transpose", {"dim0": int(dim0), "dim1": int(dim1)}, "TransposeBackward0")

    swapaxes = swapdims = transpose

    def t(self):
        if self.dim() > 2:
            raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {self.dim()}D")
        if self.dim() < 2:
            return self._view_op("permute", {"dims": tuple(range(self.dim()))}, "TBackward0")
        return self._view_op("transpose", {"dim0": 0, "dim1": 1}, "TBackward0")

    @property
    def T(self):  # noqa: N802
        # TORCH_WARN_ONCE: each warning at most once per process.
        if self.dim() == 0 and _warn_once("T0"):
            warnings.warn("Tensor.T is deprecated on 0-D tensors. This function is the identity in these "
                          "cases.", UserWarning, stacklevel=2)
        elif self.dim() not in (0, 2) and _warn_once("T"):
            warnings.warn("The use of `x.T` on tensors of dimension other than 2 to reverse their shape is "
                          "deprecated and it will throw an error in a future release. Consider `x.mT` to "
                          "transpose batches of matrices or `x.permute(*torch.arange(x.ndim - 1, -1, -1))` "
                          "to reverse the dimensions of a tensor.", UserWarning, stacklevel=2)
        return self.permute(*reversed(range(self.dim())))

    @property
    def mT(self):  # noqa: N802
        if self.dim() < 2:
            raise RuntimeError(f"tensor.mT is only supported on matrices or batches of matrices. Got "
                               f"{self.dim()}-D tensor.")
        return self.transpose(-2, -1)

    def movedim(self, source, destination):
        src = tuple(source) if isinstance(source, (tuple, list)) else (source,)
        dst = tuple(destination) if isinstance(destination, (tuple, list)) else (destination,)
        return self._view_op("movedim", {"source": src, "destination": dst}, "PermuteBackward0")

    moveaxis = movedim

    def expand(self, *sizes):
        return self._view_op("expand", {"shape": _sizes(sizes)}, "ExpandBackward0")

    def expand_as(self, other):
        return self.expand(other.shape)

    def broadcast_to(self, shape):
        return self.expand(shape)

    def contiguous(self, memory_format=None):
        if self.is_contiguous():
            return self
        return apply("contiguous", [self], None, "CloneBackward0")

    def clone(self, *, memory_format=None):
        return apply("clone", [self], None, "CloneBackward0")

    def flip(self, *dims):
        return apply("flip", [self], {"dims": _sizes(dims)}, "FlipBackward0")

    def repeat(self, *sizes):
        return apply("repeat", [self], {"repeats": _sizes(sizes)}, "RepeatBackward0")

    def split(self, split_size, dim=0):
        size = self.shape[dim]
        if isinstance(split_size, (list, tuple)):
            sizes = tuple(int(s) for s in split_size)
            return tuple(self._view_op("split", {"split_size": sizes, "dim": dim, "index": i},
                                       "SplitWithSizesBackward0") for i in range(len(sizes)))
        n = max(1, -(-size // split_size)) if split_size else 1
        return tuple(self._view_op("split", {"split_size": int(split_size), "dim": dim, "index": i},
                                   "SplitBackward0") for i in range(n))

    def chunk(self, chunks, dim=0):
        size = self.shape[dim]
        step = -(-size // chunks) if chunks > 0 else 0
        n = -(-size // step) if step else chunks
        return tuple(self._view_op("chunk", {"chunks": int(chunks), "dim": dim, "index": i},
                                   "SplitBackward0") for i in range(n))

    def unbind(self, dim=0):
        n = self.shape[dim]
        return tuple(self._view_op("unbind", {"dim": dim, "index": i}, "UnbindBackward0") for i in range(n))

    def select(self, dim, index):
        return self[(slice(None),) * (dim % max(self.dim(), 1)) + (int(index),)]

    def narrow(self, dim, start, length):
        index = (slice(None),) * (dim % self.dim()) + (slice(start, start + length),)
        return self[index]

    # ----- dtype conversions -------------------------------------------------------------

    def to(self, *args, **kwargs):
        dtype = kwargs.get("dtype")
        copy = kwargs.get("copy", False)
        for a in args:
            if isinstance(a, _dtypes.dtype):
                dtype = a
            elif is_tensor(a):
                dtype = a.dtype
            elif isinstance(a, str) or a.__class__.__name__ == "device":
                if str(a) != "cpu":
                    raise RuntimeError(f"gradserve tensors live on the cpu (the service computes), got {a!r}")
        if dtype is None or (dtype is self.dtype and not copy):
            return self
        return apply("cast", [self], {"dtype": dtype.name}, "ToCopyBackward0")

    def type(self, dtype=None):
        if dtype is None:
            return f"torch.{self.dtype._legacy}"
        return self.to(dtype)

    def type_as(self, other):
        return self.to(other.dtype)

    def float(self):
        return self.to(_dtypes.float32)

    def double(self):
        return self.to(_dtypes.float64)

    def half(self):
        return self.to(_dtypes.float16)

    def long(self):
        return self.to(_dtypes.int64)

    def int(self):
        return self.to(_dtypes.int32)

    def short(self):
        return self.to(_dtypes.int16)

    def bool(self):
        return self.to(_dtypes.bool_)

    def byte(self):
        return self.to(_dtypes.uint8)

    def cpu(self):
        return self

    # ----- indexing-style ops ------------------------------------------------------------

    def gather(self, dim, index):
        _check_index_values(self, dim, index, "gather")
        return apply("gather", [self, index], {"dim": int(dim)}, "GatherBackward0")

    def index_select(self, dim, index):
        _check_index_values(self, dim, index, "index_select")
        return apply("index_select", [self, index], {"dim": int(dim)}, "IndexSelectBackward0")

    def masked_fill(self, mask, value):
        if is_tensor(value):
            return apply("masked_fill", [self, mask, value], None, "MaskedFillBackward1")
        return apply("masked_fill", [self, mask], {"value": scalar(value)}, "MaskedFillBackward0")

    # ----- activations that are also Tensor methods ---------------------------------------

    def relu(self):
        return apply("relu", [self], None, "ReluBackward0")

    def softmax(self, dim, dtype=None):
        x = self if dtype is None else self.to(dtype)
        return apply("softmax", [x], {"dim": int(dim)}, "SoftmaxBackward0")

    def log_softmax(self, dim, dtype=None):
        x = self if dtype is None else self.to(dtype)
        return apply("log_softmax", [x], {"dim": int(dim)}, "LogSoftmaxBackward0")

    # ----- new tensors like this one ------------------------------------------------------

    def new_tensor(self, data, dtype=None, device=None, requires_grad=False):
        from ._factories import tensor
        if is_tensor(data):
            warnings.warn("To copy construct from a tensor, it is recommended to use sourceTensor.detach()"
                          ".clone() or sourceTensor.detach().clone().requires_grad_(True), rather than "
                          "tensor.new_tensor(sourceTensor).", UserWarning, stacklevel=2)
            data = data.detach()._value()
        return tensor(data, dtype=dtype or self.dtype, requires_grad=requires_grad)

    def new_zeros(self, *size, dtype=None, requires_grad=False):
        from ._factories import zeros
        return zeros(*size, dtype=dtype or self.dtype, requires_grad=requires_grad)

    def new_ones(self, *size, dtype=None, requires_grad=False):
        from ._factories import ones
        return ones(*size, dtype=dtype or self.dtype, requires_grad=requires_grad)

    def new_full(self, size, fill_value, dtype=None, requires_grad=False):
        from ._factories import full
        return full(size, fill_value, dtype=dtype or self.dtype, requires_grad=requires_grad)

    def new_empty(self, *size, dtype=None, requires_grad=False):
        return self.new_zeros(*size, dtype=dtype, requires_grad=requires_grad)


# Unary ops that are a method and a torch function with the same engine name: name -> grad_fn.
UNARY = {
    "exp": "ExpBackward0", "expm1": "Expm1Backward0", "log": "LogBackward0", "log1p": "Log1PBackward0",
    "log2": "Log2Backward0", "log10": "Log10Backward0", "sqrt": "SqrtBackward0", "rsqrt": "RsqrtBackward0",
    "reciprocal": "ReciprocalBackward0", "sin": "SinBackward0", "cos": "CosBackward0",
    "tan": "TanBackward0", "tanh": "TanhBackward0", "sigmoid": "SigmoidBackward0",
    "abs": "AbsBackward0", "sign": "SignBackward0", "floor": "FloorBackward0", "ceil": "CeilBackward0",
    "trunc": "TruncBackward0", "asin": "AsinBackward0", "acos": "AcosBackward0", "atan": "AtanBackward0",
    "sinh": "SinhBackward0", "cosh": "CoshBackward0", "erf": "ErfBackward0",
}


def _unary_method(op: str, name: str):
    def method(self):
        return apply(op, [self], None, name)
    method.__name__ = op
    method.__doc__ = f"Elementwise {op} ({name})."
    return method


for _op, _name in UNARY.items():
    setattr(TensorOps, _op, _unary_method(_op, _name))
TensorOps.absolute = TensorOps.abs
TensorOps.fix = TensorOps.trunc
TensorOps.arcsin, TensorOps.arccos, TensorOps.arctan = TensorOps.asin, TensorOps.acos, TensorOps.atan

