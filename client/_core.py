"""Tensor core: a handle on a recorded value plus PyTorch's autograd bookkeeping.

A tensor points at a shared `_Storage` (the current value expression, shared with `detach()` and
`.data` aliases) and a shared version counter (shared with `detach()`, not with `.data`).
In-place ops record a new expression and swap it into the storage. Op methods live in `_ops`,
in-place methods in `_inplace`, indexing in `_indexing`; `_tensor` puts them together.
"""

from __future__ import annotations

import functools
import math
import warnings
import weakref
from types import MappingProxyType
from typing import Any, Sequence

import numpy as np

from gradserve import engine

from . import _autograd, _dtypes, _graph
from ._format import tensor_repr
from ._size import Size
from .autograd.grad_mode import is_grad_enabled, is_inference_mode_enabled

NON_LEAF_GRAD_WARNING = (
    "The .grad attribute of a Tensor that is not a leaf Tensor is being accessed. Its .grad attribute "
    "won't be populated during autograd.backward(). If you indeed want the .grad field to be populated "
    "for a non-leaf Tensor, use .retain_grad() on the non-leaf Tensor. If you access the non-leaf "
    "Tensor by mistake, make sure you access the leaf Tensor instead. See "
    "github.com/pytorch/pytorch/pull/30531 for more information.")
LEAF_FLAGS_ERROR = (
    "you can only change requires_grad flags of leaf variables. If you want to use a computed "
    "variable in a subgraph that doesn't require differentiation use var_no_grad = var.detach().")
DETACH_VIEW_ERROR = (
    "Can't detach views in-place. Use detach() instead. If you are using DistributedDataParallel "
    "(DDP) for training, and gradient_as_bucket_view is set as True, gradients are views of DDP "
    "buckets, and hence detach_() cannot be called on these gradients. To fix this error, please "
    "refer to the Optimizer.zero_grad() function in torch/optim/optimizer.py as the solution.")
INFERENCE_SAVE_ERROR = (
    "Inference tensors cannot be saved for backward. Please do not use Tensors created in inference "
    "mode in computation tracked by autograd. To work around this, you can make a clone to get a "
    "normal tensor and use it in autograd, or use `torch.no_grad()` instead of "
    "`torch.inference_mode()`.")

_NO_HOOKS: Any = MappingProxyType({})


class _Storage:
    """The current value of a tensor and of its aliases."""

    __slots__ = ("expr",)

    def __init__(self, expr: _graph.Expr) -> None:
        self.expr = expr


class _Version:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


class _View:
    """How a view derives from its base: one recorded op, re-applied whenever the base changes."""

    __slots__ = ("base", "op", "attrs", "base_expr", "expr", "version")

    def __init__(self, base: "TensorCore", op: str, attrs: dict, expr: _graph.Expr) -> None:
        self.base = base
        self.op = op
        self.attrs = attrs
        self.base_expr = base._expr
        self.expr = expr
        self.version = base._vc.value


class device:  # noqa: N801
    def __init__(self, type: str = "cpu", index: int | None = None) -> None:
        if str(type) != "cpu":
            raise RuntimeError(f"gradserve tensors live on the cpu (the service computes), got {type!r}")
        self.type = "cpu"
        self.index = index

    def __eq__(self, other) -> bool:
        return str(other) == "cpu" or isinstance(other, device)

    def __hash__(self) -> int:
        return hash("cpu")

    def __repr__(self) -> str:
        return "device(type='cpu')"

    def __str__(self) -> str:
        return "cpu"


CPU = device("cpu")


class TensorCore:
    """Identity, autograd state, conversions and repr. Subclassed by `Tensor` with the op methods."""

    _hooks = _NO_HOOKS
    _post_hooks = _NO_HOOKS
    _retains_grad = False
    _inference = False
    _view: _View | None = None
    _noncontiguous = False
    _strides: tuple[int, ...] | None = None    # a view's strides (None: row-major)
    __array_priority__ = 1000        # numpy scalars defer to Tensor's reflected operators

    # ----- construction ----------------------------------------------------------------------

    @classmethod
    def _from_expr(cls, expr: _graph.Expr, *, requires_grad: bool = False):
        t = object.__new__(cls)
        t._storage = _Storage(expr)
        t._vc = _Version()
        t._requires_grad = requires_grad
        t._grad_fn = None
        t._grad = None
        t._accum = None
        return t

    @classmethod
    def _from_array(cls, array: np.ndarray, *, requires_grad: bool = False):
        return cls._from_expr(_graph.leaf(array), requires_grad=requires_grad)

    @property
    def _expr(self) -> _graph.Expr:
        v = self._view
        if v is None:
            return self._storage.expr
        base_expr = v.base._expr
        if base_expr is not v.base_expr:
            v.expr = _graph.node(v.op, [base_expr], v.attrs)
            v.base_expr = base_expr
        return v.expr

    def _set_value_expr(self, expr: _graph.Expr) -> None:
        """Replace this tensor's value (and its aliases'); a view writes through to its base."""
        v = self._view
        if v is None:
            self._storage.expr = expr
            return
        from ._inplace import write_through
        write_through(self, expr)

    def _value(self) -> np.ndarray:
        return _graph.value(self._expr)

    def _edge(self):
        """Where a gradient flowing into this tensor goes: its grad_fn, its AccumulateGrad, or nowhere."""
        fn = self.grad_fn
        if fn is not None:
            return fn
        if self._requires_grad:
            return self._accumulate_grad()
        return None

    def _accumulate_grad(self) -> _autograd.AccumulateGrad:
        acc = self._accum() if self._accum is not None else None
        if acc is None:
            acc = _autograd.AccumulateGrad(self)
            self._accum = weakref.ref(acc)
        return acc

    # ----- metadata ---------------------------------------------------------------------------

    @property
    def shape(self) -> Size:
        return Size(self._expr.spec.shape)

    def size(self, dim: int | None = None):
        shape = self._expr.spec.shape
        if dim is None:
            return Size(shape)
        return shape[_wrap_dim(dim, len(shape))]

    def dim(self) -> int:
        return len(self._expr.spec.shape)

    ndimension = dim

    @property
    def ndim(self) -> int:
        return self.dim()

    def numel(self) -> int:
        return math.prod(self._expr.spec.shape)

    nelement = numel

    @property
    def dtype(self) -> _dtypes.dtype:
        return _dtypes.from_numpy_dtype(self._expr.spec.dtype)

    @property
    def device(self) -> device:
        return CPU

    @property
    def is_cuda(self) -> bool:
        return False

    def is_floating_point(self) -> bool:
        return self._expr.spec.dtype.kind == "f"

    def is_complex(self) -> bool:
        return False

    def element_size(self) -> int:
        return self._expr.spec.dtype.itemsize

    def is_contiguous(self, memory_format=None) -> bool:
        return not self._noncontiguous

    def is_inference(self) -> bool:
        return self._inference

    @property
    def _version(self) -> int:
        return self._vc.value

    @property
    def _base(self):
        return self._view.base if self._view is not None else None

    def _is_view(self) -> bool:
        return self._view is not None

    # ----- autograd state ----------------------------------------------------------------------

    @property
    def grad_fn(self):
        v = self._view
        fn = self._grad_fn
        if v is not None and v.version != v.base._vc.value and (v.base.requires_grad or fn is not None):
            # The base changed in place since this view was taken: its history is the base's.
            from ._inplace import regenerate_view_grad_fn
            fn = regenerate_view_grad_fn(self)
        return fn

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad or self.grad_fn is not None

    @requires_grad.setter
    def requires_grad(self, flag: bool) -> None:
        self._set_requires_grad(bool(flag))

    def requires_grad_(self, requires_grad: bool = True):
        self._set_requires_grad(bool(requires_grad))
        return self

    def _set_requires_grad(self, flag: bool) -> None:
        if self.grad_fn is not None:
            raise RuntimeError(LEAF_FLAGS_ERROR)
        if flag and not self.is_floating_point():
            raise RuntimeError("only Tensors of floating point dtype can require gradients")
        self._requires_grad = flag

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def grad(self):
        if self.grad_fn is not None and not self._retains_grad:
            warnings.warn(NON_LEAF_GRAD_WARNING, UserWarning, stacklevel=2)
        return self._grad

    @grad.setter
    def grad(self, value) -> None:
        if value is not None:
            if not isinstance(value, TensorCore):
                raise TypeError("assigned grad expected to be a Tensor or None but got grad of type "
                                f"{type(value).__name__}")
            if value.shape != self.shape:
                raise RuntimeError(
                    f"attempting to assign a gradient of size '{list(value.shape)}' to a tensor of size "
                    f"'{list(self.shape)}'. Please ensure that the gradient and the tensor are the same size")
            if value.dtype is not self.dtype:
                raise RuntimeError(
                    f"attempting to assign a gradient with dtype '{value.dtype._cname}' to a tensor with "
                    f"grad_dtype '{self.dtype._scalar}'. The gradient must match the tensor's grad_dtype "
                    "(defaults to the tensor's dtype). You can set the tensor's grad_dtype attribute with "
                    "a specific dtype, or None to allow any dtype. Set grad_dtype with caution. Diverging "
                    "the dtypes of a tensor and its gradient may break downstream systems that assume "
                    "they match.")
        self._grad = value

    @grad.deleter
    def grad(self) -> None:
        self._grad = None

    @property
    def retains_grad(self) -> bool:
        return self._retains_grad

    def retain_grad(self) -> None:
        if not self.requires_grad:
            raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
        if self.grad_fn is not None:
            self._retains_grad = True

    def register_hook(self, hook):
        """`hook(grad) -> Tensor | None`, run client-side when this tensor's gradient is known.

        On a leaf the hooks see the summed gradient before it is accumulated. On a non-leaf the
        gradient at the tensor is requested from the executor too; a hook that returns a different
        gradient costs one more request (from this tensor, seeded with the change).
        """
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        return self._add_hook("_hooks", hook)

    def _add_hook(self, attr: str, hook):
        from .utils.hooks import HookDict, RemovableHandle
        hooks = getattr(self, attr)
        if hooks is _NO_HOOKS:
            hooks = HookDict()
            setattr(self, attr, hooks)
        handle = RemovableHandle(hooks)
        hooks[handle.id] = hook
        return handle

    def register_post_accumulate_grad_hook(self, hook):
        """`hook(tensor) -> None`, run after backward has accumulated this leaf's `.grad`."""
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self.grad_fn is not None:
            raise RuntimeError("post accumulate grad hooks cannot be registered on non-leaf tensors")
        return self._add_hook("_post_hooks", hook)

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None) -> None:
        from .autograd import backward
        backward(self, gradient, retain_graph, create_graph, inputs=inputs)

    def detach(self):
        """A tensor sharing this one's value and version counter, outside the graph."""
        t = type(self)._alias_of(self)
        t._vc = self._vc
        return t

    def detach_(self):
        if self._view is not None:
            raise RuntimeError(DETACH_VIEW_ERROR)
        self._grad_fn = None
        self._requires_grad = False
        return self

    @classmethod
    def _alias_of(cls, other: "TensorCore"):
        from ._tensor import Tensor
        t = Tensor._from_expr(other._expr)
        if other._view is None:
            t._storage = other._storage
        else:
            t._view = other._view
        t._inference = other._inference
        return t

    @property
    def data(self):
        """Shares the value but not the version counter: changes through it are not tracked."""
        return type(self)._alias_of(self)

    @data.setter
    def data(self, other) -> None:
        self._view = None
        self._storage = other._storage if other._view is None else _Storage(other._expr)

    # ----- conversions ---------------------------------------------------------------------------

    def numpy(self, *, force: bool = False) -> np.ndarray:
        if self.requires_grad and not force:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. "
                               "Use tensor.detach().numpy() instead.")
        return self._value()

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def item(self):
        n = self.numel()
        if n != 1:
            raise RuntimeError(f"a Tensor with {n} elements cannot be converted to Scalar")
        return self._value().reshape(()).item()

    def tolist(self):
        return self._value().tolist()

    def __float__(self) -> float:
        if self.numel() != 1:
            raise ValueError("only one element tensors can be converted to Python scalars")
        if self.requires_grad:
            warnings.warn("Converting a tensor with requires_grad=True to a scalar may lead to unexpected "
                          "behavior.\nConsider using tensor.detach() first.", UserWarning, stacklevel=2)
        return float(self._value().reshape(()))

    def __int__(self) -> int:
        if self.numel() != 1:
            raise ValueError("only one element tensors can be converted to Python scalars")
        return int(self._value().reshape(()))

    def __index__(self) -> int:
        if self.is_floating_point() or self.numel() != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self._value().reshape(()))

    def __bool__(self) -> bool:
        n = self.numel()
        if n == 0:
            raise RuntimeError("Boolean value of Tensor with no values is ambiguous")
        if n > 1:
            raise RuntimeError("Boolean value of Tensor with more than one value is ambiguous")
        return bool(self._value().reshape(()))

    def __len__(self) -> int:
        shape = self._expr.spec.shape
        if not shape:
            raise TypeError("len() of a 0-d tensor")
        return shape[0]

    def __iter__(self):
        if self.dim() == 0:
            raise TypeError("iteration over a 0-d tensor")
        return iter(self.unbind(0))

    def __hash__(self) -> int:
        return id(self)

    def __format__(self, spec: str) -> str:
        if self.dim() == 0 and spec:
            return self.item().__format__(spec)
        return repr(self)

    def __repr__(self) -> str:
        fn = self.grad_fn
        return tensor_repr(self._value(), grad_fn=type(fn).__name__ if fn is not None else None,
                           requires_grad=self.requires_grad)

    __str__ = __repr__

    def __reduce_ex__(self, protocol):
        raise TypeError("gradserve tensors are not pickled; use tensor.tolist() or tensor.detach().numpy()")

    def __deepcopy__(self, memo):
        if not self.is_leaf:
            raise RuntimeError("Only Tensors created explicitly by the user (graph leaves) support the "
                               "deepcopy protocol at the moment.  If you were attempting to deepcopy a "
                               "module, this may be because of a torch.nn.utils.weight_norm usage, see "
                               "https://github.com/pytorch/pytorch/pull/103001")
        t = type(self)._from_array(np.array(self._value(), copy=True), requires_grad=self._requires_grad)
        memo[id(self)] = t
        return t


def _wrap_dim(dim: int, ndim: int) -> int:
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], "
                         f"but got {dim})")
    return dim % n


def apply(op: str, tensors: Sequence["TensorCore"], attrs: dict | None = None, name: str | None = None,
          *, saved: Sequence[bool] | None = None, force: bool = False):
    """Record `op` on `tensors`: the one place results get their spec, grad_fn and saved tensors.

    `name` is the grad_fn class (None: not differentiable). `saved` says which inputs backward
    needs (defaults to what the engine op reads). `force` records even with grad mode off (for
    history that PyTorch rebuilds lazily, such as a view's grad_fn after its base changed).
    """
    expr = _graph.node(op, [t._expr for t in tensors], attrs or {})
    out = _tensor_class()._from_expr(expr)
    if is_inference_mode_enabled():
        out._inference = True
    if name is None or not (force or is_grad_enabled()) or expr.spec.dtype.kind != "f":
        return out
    edges = tuple(t._edge() for t in tensors)
    if all(e is None for e in edges):
        return out
    engine_reads = _reads(op, len(tensors))
    if engine_reads is None:
        return out
    reads, reads_output = engine_reads
    if saved is not None:
        reads = tuple(j for j in reads if saved[j])
    n_saved = len(reads) + (1 if reads and "other" in expr.attrs else 0)
    fn = _autograd.node_class(name, n_saved)(op, expr.attrs, expr.inputs, edges, expr)
    fn._saves = bool(reads) or reads_output
    refs = []
    for j in reads:
        if tensors[j]._inference:
            raise RuntimeError(INFERENCE_SAVE_ERROR)
        refs.append(_autograd.SavedRef(tensors[j], "input", index=j))
    fn._tensor = weakref.ref(out)
    out._grad_fn = fn
    if reads_output:
        refs.append(_autograd.SavedRef(out, "output", name))
    fn._refs = tuple(refs)
    return out


@functools.cache
def _reads(op: str, n_inputs: int) -> tuple[tuple[int, ...], bool] | None:
    """What backward of `op` reads (input positions, the output), or None if it has no backward;
    asked once per op and arity rather than on every recorded call."""
    engine_op = engine.OPS[op]
    return engine_op.reads(n_inputs) if engine_op.differentiable else None


@functools.cache
def _tensor_class() -> type:
    # `_tensor` builds Tensor on top of this module, so it can only be imported once in use.
    from ._tensor import Tensor
    return Tensor
