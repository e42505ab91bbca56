"""Indexing: getitem (int, slice with step, None, Ellipsis, integer tensors, bool masks, mixed),
index_put (setitem on non-leaves), gather, index_select, masked_fill, where.

The `index` attribute of getitem/index_put is a tuple with one item per index position:

    int                         select (negative wraps)
    None                        new dim of size 1
    "..."                       Ellipsis
    ("slice", start, stop, step)   any of the three may be None; step > 0
    "tensor"                    the next tensor input, an integer index array
    ("mask", n_true)            the next tensor input, a bool mask with n_true True elements
                                (declared so that shapes are known before any value is)

Like PyTorch (and unlike NumPy), basic items apply first as a view; the tensor items then index
the view, their result dims going in place when they are adjacent and first otherwise. Backward
scatters with `np.add.at`, so repeated indices accumulate.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..dtypes import BOOL, result_type
from ..errors import AttributeValueError, DTypeError, ShapeError
from ..graph import TensorSpec
from ..registry import Attrs, attr, broadcast_shapes, norm_dim, register, spec_of
from .elementwise import SCALAR

ELLIPSIS = "..."


# ---------------------------------------------------------------------------------------------
# index parsing: one pass over shapes only, shared by inference, forward and backward


class IndexPlan:
    """The getitem index split into a basic part (a NumPy view) and an advanced part."""

    def __init__(self, shape: tuple[int, ...], items: Any, tensors: Sequence[TensorSpec]) -> None:
        if not isinstance(items, tuple):
            raise AttributeValueError(f"attribute 'index' must be a tuple, got {items!r}")
        used = sum(_dims_used(item, tensors, k) for k, item in _with_tensor_slots(items))
        if items.count(ELLIPSIS) > 1:
            raise AttributeValueError("an index can only have a single ellipsis ('...')")
        if used > len(shape):
            raise ShapeError(f"too many indices for tensor of dimension {len(shape)}")
        self.basic: list[Any] = []          # NumPy basic index over the input
        self.advanced: list[tuple[int, int, str, int]] = []  # (view dim, tensor slot, kind, ndim)
        self.view_shape: list[int] = []
        dim = 0
        for slot, item in _with_tensor_slots(items):
            if item == ELLIPSIS:
                for _ in range(len(shape) - used):
                    self.basic.append(slice(None))
                    self.view_shape.append(shape[dim])
                    dim += 1
            elif item is None:
                self.basic.append(None)
                self.view_shape.append(1)
            elif isinstance(item, int) and not isinstance(item, bool):
                size = shape[dim]
                if not -size <= item < size:
                    raise ShapeError(f"index {item} is out of bounds for dimension {dim} "
                                     f"with size {size}")
                self.basic.append(item % size)
                dim += 1
            elif isinstance(item, tuple) and len(item) == 4 and item[0] == "slice":
                s = _slice(item)
                self.basic.append(s)
                self.view_shape.append(len(range(*s.indices(shape[dim]))))
                dim += 1
            else:
                kind, n = _tensor_item(item, tensors, slot)
                spec = tensors[slot]
                if kind == "mask":
                    want = shape[dim:dim + spec.ndim]
                    if spec.shape != want:
                        raise ShapeError(f"The shape of the mask {list(spec.shape)} at index "
                                         f"{dim} does not match the shape of the indexed tensor "
                                         f"{list(want)} at index {dim}")
                self.advanced.append((len(self.view_shape), slot, kind, n))
                for _ in range(spec.ndim if kind == "mask" else 1):
                    self.basic.append(slice(None))
                    self.view_shape.append(shape[dim])
                    dim += 1
        for _ in range(dim, len(shape)):
            self.basic.append(slice(None))
            self.view_shape.append(shape[dim])
            dim += 1
        # The trailing Ellipsis keeps an all-int index a 0-dim view, not a NumPy scalar copy.
        self.basic_index = (*self.basic, Ellipsis)
        self.shape = self._result_shape(tensors)

    def _result_shape(self, tensors: Sequence[TensorSpec]) -> tuple[int, ...]:
        if not self.advanced:
            return tuple(self.view_shape)
        shapes, covered = [], []
        for view_dim, slot, kind, n in self.advanced:
            if kind == "mask":
                shapes.append((n,))
                covered.extend(range(view_dim, view_dim + tensors[slot].ndim))
            else:
                shapes.append(tensors[slot].shape)
                covered.append(view_dim)
        adv = broadcast_shapes(*shapes)
        rest = [s for d, s in enumerate(self.view_shape) if d not in covered]
        if covered == list(range(covered[0], covered[0] + len(covered))):
            first = covered[0]
            return tuple(self.view_shape[:first]) + adv + tuple(
                s for d, s in enumerate(self.view_shape) if d > covered[-1])
        return adv + tuple(rest)

    def advanced_index(self, tensors: Sequence[np.ndarray]) -> tuple | None:
        """The NumPy index applied to the basic view (arrays where tensors index, else slices)."""
        if not self.advanced:
            return None
        index: list[Any] = [slice(None)] * len(self.view_shape)
        for view_dim, slot, kind, n in self.advanced:
            t = tensors[slot]
            if kind == "mask":
                found = int(np.count_nonzero(t))
                if found != n:
                    raise ShapeError(f"bool mask index has {found} True elements, declared {n}")
                for k, arr in enumerate(np.nonzero(t)):
                    index[view_dim + k] = arr
            else:
                size = self.view_shape[view_dim]
                if t.size and (t.min() < -size or t.max() >= size):
                    bad = t[(t < -size) | (t >= size)].flat[0]
                    raise ShapeError(f"index {bad} is out of bounds for dimension {view_dim} "
                                     f"with size {size}")
                index[view_dim] = t
        return tuple(index)


def _with_tensor_slots(items: tuple) -> list[tuple[int, Any]]:
    """Pair each item with the slot of the tensor input it consumes (or -1)."""
    out, slot = [], 0
    for item in items:
        if item == "tensor" or (isinstance(item, tuple) and item[:1] == ("mask",)):
            out.append((slot, item))
            slot += 1
        else:
            out.append((-1, item))
    return out


def _dims_used(item: Any, tensors: Sequence[TensorSpec], slot: int) -> int:
    if item is None or item == ELLIPSIS:
        return 0
    if slot >= 0:
        if slot >= len(tensors):
            raise AttributeValueError("index names more tensors than the node has index inputs")
        return tensors[slot].ndim if isinstance(item, tuple) else 1
    return 1


def _slice(item: tuple) -> slice:
    _, start, stop, step = item
    for v in (start, stop, step):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
            raise AttributeValueError(f"slice bounds must be ints or None, got {item!r}")
    if step is not None and step <= 0:
        raise AttributeValueError("step must be greater than zero")
    return slice(start, stop, step)


def _tensor_item(item: Any, tensors: Sequence[TensorSpec], slot: int) -> tuple[str, int]:
    if slot < 0:
        raise AttributeValueError(f"unsupported index item {item!r}")
    dtype = tensors[slot].dtype
    if item == "tensor":
        if dtype.kind == "b":
            raise AttributeValueError("a bool tensor index must be given as ('mask', n_true)")
        if dtype.kind not in "iu":
            raise DTypeError("tensors used as indices must be long, int, byte or bool tensors")
        return "int", 0
    if len(item) != 2 or not isinstance(item[1], int) or item[1] < 0:
        raise AttributeValueError(f"mask index item must be ('mask', n_true), got {item!r}")
    if dtype.kind != "b":
        raise DTypeError("a ('mask', n) index needs a bool tensor")
    if item[1] > tensors[slot].numel:
        raise ShapeError(f"bool mask declares {item[1]} True elements but has only "
                         f"{tensors[slot].numel}")
    return "mask", item[1]


def _index_plan(x_shape, attrs, tensor_specs) -> IndexPlan:
    return IndexPlan(tuple(x_shape), attrs.get("index"), tensor_specs)


# ---------------------------------------------------------------------------------------------
# getitem, index_put


def getitem_infer(specs, attrs):
    plan = _index_plan(specs[0].shape, attrs, specs[1:])
    return TensorSpec(plan.shape, specs[0].dtype)


def _getitem(xs, attrs):
    plan = _index_plan(xs[0].shape, attrs, [spec_of(t) for t in xs[1:]])
    view = xs[0][plan.basic_index]
    adv = plan.advanced_index(xs[1:])
    return view if adv is None else view[adv]


def _getitem_backward(g, xs, out, attrs):
    x = xs[0]
    plan = _index_plan(x.shape, attrs, [spec_of(t) for t in xs[1:]])
    grad = np.zeros(x.shape, g.dtype)
    view = grad[plan.basic_index]
    adv = plan.advanced_index(xs[1:])
    if adv is None:
        view[...] = g
    else:
        np.add.at(view, adv, g)
    return (grad,) + (None,) * (len(xs) - 1)


register("getitem", arity=(1, None), infer=getitem_infer, forward=_getitem,
         backward=_getitem_backward, saves=lambda n: tuple(range(1, n)))


def _put_parts(n_inputs: int, attrs: Attrs) -> tuple[bool, int]:
    """(value is a tensor input, position of the first index tensor)."""
    has_tensor = attrs.get("value") is None
    return has_tensor, 2 if has_tensor else 1


def index_put_infer(specs, attrs):
    has_tensor, first = _put_parts(len(specs), attrs)
    if has_tensor and len(specs) < 2:
        raise AttributeValueError("index_put needs a value input or a scalar attribute 'value'")
    if not has_tensor:
        attr(attrs, "value", SCALAR)
    attr(attrs, "accumulate", bool, False)
    plan = _index_plan(specs[0].shape, attrs, specs[first:])
    if has_tensor:
        try:
            target = broadcast_shapes(specs[1].shape, plan.shape)
        except ShapeError:
            target = None
        if target != plan.shape:
            raise ShapeError(f"shape mismatch: value tensor of shape {list(specs[1].shape)} cannot "
                             f"be broadcast to indexing result of shape {list(plan.shape)}")
    return specs[0]


def _index_put(xs, attrs):
    has_tensor, first = _put_parts(len(xs), attrs)
    x = xs[0]
    plan = _index_plan(x.shape, attrs, [spec_of(t) for t in xs[first:]])
    value = xs[1] if has_tensor else np.asarray(attrs["value"])
    out = x.copy()
    view = out[plan.basic_index]
    adv = plan.advanced_index(xs[first:])
    value = value.astype(x.dtype, copy=False)
    if attrs.get("accumulate"):
        np.add.at(view, adv if adv is not None else Ellipsis, value)
    elif adv is None:
        view[...] = value
    else:
        view[adv] = value
    return out


def _index_put_backward(g, xs, out, attrs):
    has_tensor, first = _put_parts(len(xs), attrs)
    plan = _index_plan(xs[0].shape, attrs, [spec_of(t) for t in xs[first:]])
    adv = plan.advanced_index(xs[first:])
    selected = g[plan.basic_index]
    if adv is not None:
        selected = selected[adv]
    gx = g
    if not attrs.get("accumulate"):
        gx = g.copy()
        view = gx[plan.basic_index]
        if adv is None:
            view[...] = 0
        else:
            view[adv] = 0
    grads = [gx] + ([selected] if has_tensor else []) + [None] * (len(xs) - first)
    return tuple(grads)


register("index_put", arity=(1, None), infer=index_put_infer, forward=_index_put,
         backward=_index_put_backward,
         saves=lambda n: tuple(range(1, n)))


# ---------------------------------------------------------------------------------------------
# gather, index_select


_INDEX_DTYPE_ERRORS = {"gather": "gather(): Expected dtype int32/int64 for index",
                       "index_select": "index_select(): Expected dtype int32 or int64 for index"}


def _require_index(spec: TensorSpec, op: str) -> None:
    if spec.dtype.kind not in "iu":
        raise DTypeError(_INDEX_DTYPE_ERRORS[op])


def gather_infer(specs, attrs):
    x, index = specs
    _require_index(index, "gather")
    dim = norm_dim(attr(attrs, "dim", int), x.ndim)
    if max(index.ndim, 1) != max(x.ndim, 1):
        raise ShapeError("Index tensor must have the same number of dimensions as input tensor")
    for d in range(index.ndim):
        if d != dim and index.shape[d] > x.shape[d]:
            raise ShapeError(f"Size does not match at dimension {d} expected index "
                             f"{list(index.shape)} to be no larger than self {list(x.shape)} "
                             f"apart from dimension {dim}")
    return TensorSpec(index.shape, x.dtype)


def _gather_index(x: np.ndarray, index: np.ndarray, attrs: Attrs) -> tuple:
    """Full NumPy index: `index` along dim, an open grid along every other dim."""
    dim = norm_dim(attrs["dim"], x.ndim)
    size = x.shape[dim] if x.ndim else 1
    if index.size and (index.min() < -size or index.max() >= size):
        bad = index[(index < -size) | (index >= size)].flat[0]
        raise ShapeError(f"index {bad} is out of bounds for dimension {dim} with size {size}")
    if x.ndim == 0:
        return ()
    grid = list(np.ogrid[tuple(slice(0, s) for s in index.shape)])
    grid[dim] = index
    return tuple(grid)


def _gather_backward(g, xs, out, attrs):
    x, index = xs
    grad = np.zeros(x.shape, g.dtype)
    np.add.at(grad, _gather_index(x, index, attrs), g)
    return grad, None


register("gather", arity=2, infer=gather_infer, backward=_gather_backward, saves=(1,),
         forward=lambda xs, attrs: xs[0][_gather_index(xs[0], xs[1], attrs)])


def index_select_infer(specs, attrs):
    x, index = specs
    if index.ndim > 1:   # checked before the dtype, as PyTorch does
        raise ShapeError("index_select(): Index is supposed to be a vector")
    _require_index(index, "index_select")
    dim = norm_dim(attr(attrs, "dim", int), x.ndim)
    if x.ndim == 0:
        return TensorSpec((), x.dtype)
    return TensorSpec(x.shape[:dim] + (index.numel,) + x.shape[dim + 1:], x.dtype)


def _select_index(x: np.ndarray, index: np.ndarray, attrs: Attrs) -> tuple:
    dim = norm_dim(attrs["dim"], x.ndim)
    size = x.shape[dim] if x.ndim else 1
    flat = index.reshape(-1)
    if flat.size and (flat.min() < -size or flat.max() >= size):
        raise ShapeError("index out of range in self")
    if x.ndim == 0:
        return ()
    return (slice(None),) * dim + (flat,)


def _index_select_backward(g, xs, out, attrs):
    x, index = xs
    grad = np.zeros(x.shape, g.dtype)
    np.add.at(grad, _select_index(x, index, attrs), g)
    return grad, None


register("index_select", arity=2, infer=index_select_infer, backward=_index_select_backward,
         saves=(1,), forward=lambda xs, attrs: xs[0][_select_index(xs[0], xs[1], attrs)])


# ---------------------------------------------------------------------------------------------
# masked_fill (value: attrs["value"] scalar, or a third input that is a 0-dim tensor), where


def masked_fill_infer(specs, attrs):
    x, mask = specs[0], specs[1]
    if mask.dtype != BOOL:
        raise DTypeError(f"masked_fill_ only supports boolean masks, but got mask with dtype "
                         f"{mask.dtype.name}")
    if len(specs) == 3:
        if specs[2].ndim:
            raise ShapeError("masked_fill_ only supports a 0-dimensional value tensor, but got "
                             f"tensor with {specs[2].ndim} dimension(s).")
    else:
        attr(attrs, "value", SCALAR)
    return TensorSpec(broadcast_shapes(x.shape, mask.shape), x.dtype)


def _masked_fill(xs, attrs):
    x, mask = xs[0], xs[1]
    value = xs[2] if len(xs) == 3 else attrs["value"]
    return np.where(mask, np.asarray(value).astype(x.dtype), x)


def _masked_fill_backward(g, xs, out, attrs):
    mask = xs[1]
    gx = np.where(mask, 0, g)
    if len(xs) == 2:
        return gx, None
    return gx, None, np.sum(np.where(mask, g, 0))


register("masked_fill", arity=(2, 3), infer=masked_fill_infer, forward=_masked_fill,
         backward=_masked_fill_backward, saves=(1,))


def _where_operands(n_inputs: int, attrs: Attrs) -> tuple[bool, bool]:
    """Which of input/other are tensors (the others are scalar attributes)."""
    return attrs.get("input") is None, attrs.get("other") is None


def where_infer(specs, attrs):
    cond = specs[0]
    x_tensor, y_tensor = _where_operands(len(specs), attrs)
    if len(specs) != 1 + x_tensor + y_tensor:
        raise AttributeValueError("where takes condition plus a tensor input for each of "
                                  "'input'/'other' not given as a scalar attribute")
    if cond.dtype != BOOL:
        raise DTypeError(f"where expected condition to be a boolean tensor, but got a tensor "
                         f"with dtype {cond.dtype.name}")
    scalars = [attr(attrs, k, SCALAR) for k in ("input", "other") if attrs.get(k) is not None]
    dtype = result_type(specs[1:], scalars) if len(specs) > 1 else result_type([], scalars)
    return TensorSpec(broadcast_shapes(*(s.shape for s in specs)), dtype)


def _where(xs, attrs):
    dtype = where_infer([spec_of(x) for x in xs], attrs).dtype
    operands = list(xs[1:])
    x = operands.pop(0) if attrs.get("input") is None else attrs["input"]
    y = operands.pop(0) if attrs.get("other") is None else attrs["other"]
    return np.where(xs[0], np.asarray(x).astype(dtype, copy=False),
                    np.asarray(y).astype(dtype, copy=False))


def _where_backward(g, xs, out, attrs):
    cond = xs[0]
    grads: list = [None]
    if attrs.get("input") is None:
        grads.append(np.where(cond, g, 0))
    if attrs.get("other") is None:
        grads.append(np.where(cond, 0, g))
    return tuple(grads)


register("where", arity=(1, 3), infer=where_infer, forward=_where, backward=_where_backward,
         saves=(0,))
