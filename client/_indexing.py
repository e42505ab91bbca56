"""`tensor[index]` and `tensor[index] = value`, encoded as the engine's getitem/index_put index.

Basic indexing (ints, slices, None, Ellipsis) gives a view; integer tensors/lists and bool masks
give a copy (IndexBackward0). A bool mask's number of True elements is part of the recorded
index (shapes are inferred before any value is known), so a lazy mask is computed first.
"""

from __future__ import annotations

import numpy as np

from ._core import apply
from ._inplace import check_inplace, commit, make_view
from ._ops import is_tensor, scalar


def _as_index_tensor(x):
    from ._factories import tensor
    return tensor(x) if not is_tensor(x) else x


def parse_index(t, index) -> tuple[tuple, list, str | None]:
    """(engine index items, index tensors, grad_fn name of a basic index or None if advanced)."""
    single = not isinstance(index, tuple)
    parsed = [_classify(item) for item in ((index,) if single else index)]
    consumed = sum(v.dim() if kind == "mask" else 1 for kind, v in parsed
                   if kind in ("int", "slice", "tensor", "mask"))
    items: list = []
    tensors: list = []
    last = "AliasBackward0"
    dim = 0                    # the dim of `t` the next item applies to
    advanced = 0               # how many dims tensor indices have consumed (torch's error numbering)
    for kind, v in parsed:
        if kind == "none":
            items.append(None)
            last = "UnsqueezeBackward0"
        elif kind == "ellipsis":
            items.append("...")
            dim += max(t.dim() - consumed, 0)
        elif kind == "slice":
            items.append(v)
            # torch skips a slice covering its whole dim with step 1 (0:, :n, ...), unless it is
            # the whole index.
            _, start, stop, step = v
            size = t.shape[dim] if dim < t.dim() else 0
            full = start in (None, 0) and step in (None, 1) and (stop is None or stop >= size)
            if single or not full:
                last = "SliceBackward0"
            dim += 1
        elif kind == "int":
            items.append(v)
            last = "SelectBackward0"
            dim += 1
        elif kind == "mask":
            items.append(("mask", int(np.count_nonzero(v._value()))))
            tensors.append(v)
            dim += v.dim()
            advanced += v.dim()
        else:
            _check_bounds(v, t, dim, advanced)
            items.append("tensor")
            tensors.append(v)
            dim += 1
            advanced += 1
    return tuple(items), tensors, (None if tensors else last)


def _classify(item) -> tuple[str, object]:
    if item is None:
        return "none", None
    if item is Ellipsis:
        return "ellipsis", None
    if isinstance(item, slice):
        start, stop, step = (_int_or_none(item.start), _int_or_none(item.stop), _int_or_none(item.step))
        if step is not None and step <= 0:
            raise ValueError("step must be greater than zero")
        return "slice", ("slice", start, stop, step)
    if isinstance(item, (bool, np.bool_)):
        raise NotImplementedError("gradserve: indexing with a Python bool is not supported")
    if scalar(item) is not None and isinstance(scalar(item), int):
        return "int", int(item)
    idx = _as_index_tensor(item)
    if idx.dtype.name == "bool":
        return "mask", idx
    if idx.is_floating_point():
        raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
    if idx.dim() == 0:
        return "int", int(idx.item())       # a 0-dim integer tensor indexes like an int
    return "tensor", idx


def _check_bounds(idx, t, dim: int, advanced: int) -> None:
    """PyTorch checks index values when indexing; do it now if they are known (a lazy index is
    checked by the executor)."""
    values = idx._expr.value
    if values is None or dim >= t.dim() or values.size == 0:
        return
    size = t.shape[dim]
    bad = (values < -size) | (values >= size)
    if bad.any():
        raise IndexError(f"index {values[bad].flat[0]} is out of bounds for dimension {advanced} with size "
                         f"{size}")


def _int_or_none(x):
    return None if x is None else int(x)


class IndexingOps:
    def __getitem__(self, index):
        items, tensors, basic_name = parse_index(self, index)
        if basic_name is not None:
            return make_view(self, "getitem", {"index": items}, basic_name)
        return apply("getitem", [self, *tensors], {"index": items}, "IndexBackward0")

    def __setitem__(self, index, value) -> None:
        items, tensors, basic_name = parse_index(self, index)
        if not is_tensor(value) and scalar(value) is None:
            from ._factories import tensor
            value = tensor(value, dtype=self.dtype)
        if basic_name is not None:
            view = self[index]
            if is_tensor(value):
                view.copy_(value)
            else:
                view.fill_(value)
            return
        self.index_put_(tuple(tensors), value, items=items)

    def index_put_(self, indices, values, accumulate=False, *, items=None):
        check_inplace(self)
        if items is None:
            items = tuple("tensor" if t.dtype.name != "bool" else ("mask", int(np.count_nonzero(t._value())))
                          for t in indices)
        attrs: dict = {"index": items}
        if accumulate:
            attrs["accumulate"] = True
        if is_tensor(values):
            out = apply("index_put", [self, values, *indices], attrs, "IndexPutBackward0")
        else:
            attrs["value"] = scalar(values)
            out = apply("index_put", [self, *indices], attrs, "IndexPutBackward0")
        commit(self, out)
        return self

    def index_put(self, indices, values, accumulate=False):
        return self.clone().index_put_(indices, values, accumulate)
