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

_FULL = ("slice", None, None, None)


def _as_index_tensor(x):
    from ._factories import tensor
    return tensor(x) if not is_tensor(x) else x


def parse_index(t, index) -> tuple[tuple, list, str | None]:
    """(engine index items, index tensors, grad_fn name of a basic index or None if advanced)."""
    if not isinstance(index, tuple):
        index = (index,)
    items: list = []
    tensors: list = []
    last = "AliasBackward0"
    for item in index:
        if item is None:
            items.append(None)
            last = "UnsqueezeBackward0"
        elif item is Ellipsis:
            items.append("...")
        elif isinstance(item, slice):
            start, stop, step = (_int_or_none(item.start), _int_or_none(item.stop),
                                 _int_or_none(item.step))
            if step is not None and step <= 0:
                raise ValueError("step must be greater than zero")
            items.append(("slice", start, stop, step))
            if items[-1] != _FULL:
                last = "SliceBackward0"
        elif isinstance(item, (bool, np.bool_)):
            raise NotImplementedError("gradserve: indexing with a Python bool is not supported")
        elif scalar(item) is not None and isinstance(scalar(item), int):
            items.append(int(item))
            last = "SelectBackward0"
        else:
            idx = _as_index_tensor(item)
            if idx.dtype.name == "bool":
                items.append(("mask", int(np.count_nonzero(idx._value()))))
            elif idx.is_floating_point():
                raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
            else:
                items.append("tensor")
            tensors.append(idx)
    return tuple(items), tensors, (None if tensors else last)


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
