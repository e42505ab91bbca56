"""`Tensor`: the core (`_core`) plus op methods (`_ops`), in-place ops (`_inplace`) and indexing."""

from __future__ import annotations

from ._core import TensorCore
from ._indexing import IndexingOps
from ._inplace import InPlaceOps
from ._ops import TensorOps


class Tensor(IndexingOps, InPlaceOps, TensorOps, TensorCore):
    """A tensor whose graph is recorded locally and computed by a gradserve executor.

    `Tensor(data)` builds a float32 tensor from data; `Tensor(2, 3)` a zero-filled one.
    """

    def __new__(cls, *args, **kwargs):
        from . import _factories
        from ._dtypes import float32
        t = _factories.legacy_new(float32, *args)
        return t if cls is Tensor else cls._from_expr(t._expr)

    def __init__(self, *args, **kwargs) -> None:
        pass

    # Allow `Tensor.__hash__` to be identity-based despite the elementwise `__eq__`.
    __hash__ = TensorCore.__hash__
