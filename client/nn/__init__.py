"""`torch.nn`: Parameter and the functional API (modules are not provided yet)."""

from __future__ import annotations

from .. import _core
from .._tensor import Tensor
from . import functional  # noqa: F401

__all__ = ["Parameter", "functional"]


class Parameter(Tensor):
    """A leaf tensor that requires grad by default; repr `Parameter containing:`."""

    def __new__(cls, data=None, requires_grad: bool = True):
        if data is None:
            from .._factories import empty
            data = empty(0)
        p = cls._from_expr(data._expr)
        if data._view is None:
            p._storage = data._storage
        p._vc = data._vc
        if requires_grad and not p.is_floating_point():
            raise RuntimeError("Only Tensors of floating point and complex dtype can require gradients")
        p._set_requires_grad(bool(requires_grad))
        return p

    def __repr__(self) -> str:
        return "Parameter containing:\n" + _core.TensorCore.__repr__(self)
