"""`torch.autograd.gradcheck`: finite differences against backward, both through the executor.

The comparison itself is the engine's `check_jacobians`; here the two Jacobians are computed by
calling the user's function on gradserve tensors, so every forward and every vector-Jacobian
product is a request to the current executor (a remote server computes in float64 end to end).
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["GradcheckError", "gradcheck", "gradgradcheck"]


class GradcheckError(RuntimeError):
    """The analytical and numerical Jacobians disagree."""


def _as_tuple(x) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def gradcheck(func: Callable[..., Any], inputs, *, eps: float = 1e-06, atol: float = 1e-05,
              rtol: float = 0.001, raise_exception: bool = True, nondet_tol: float = 0.0,
              check_undefined_grad: bool = True, check_grad_dtypes: bool = False,
              check_batched_grad: bool = False, check_batched_forward_grad: bool = False,
              check_forward_ad: bool = False, check_backward_ad: bool = True, fast_mode: bool = False,
              masked: bool | None = None) -> bool:
    """Check `func`'s gradients against central differences, PyTorch's slow mode.

    Inputs that are tensors requiring grad are perturbed; `fast_mode` runs the slow (stricter)
    check too. Forward-mode and batched checks are not supported.
    """
    from gradserve import engine

    from .._core import TensorCore
    from .._format import tensor_repr
    for flag, name in ((check_forward_ad, "check_forward_ad"), (check_batched_grad, "check_batched_grad"),
                       (check_batched_forward_grad, "check_batched_forward_grad")):
        if flag:
            raise NotImplementedError(f"gradserve: gradcheck({name}=True) is not supported: it needs "
                                      "forward-mode AD or vmap")
    tupled = _as_tuple(inputs)
    diff = [i for i, a in enumerate(tupled) if isinstance(a, TensorCore) and a.requires_grad]
    if not diff:
        raise ValueError("gradcheck expects at least one input tensor to require gradient, but none of "
                         "them have requires_grad=True.")
    for i in diff:
        if tupled[i].dtype.name != "float64":
            warnings.warn(f"Input #{i} requires gradient and is not a double precision floating point "
                          "or complex. This check will likely fail if all the inputs are not of double "
                          "precision floating point or complex. ", UserWarning, stacklevel=2)
    if not check_backward_ad:
        return True

    def call(xs: Sequence[np.ndarray], requires_grad: bool) -> tuple[list, tuple]:
        from .._tensor import Tensor
        args = list(tupled)
        leaves = []
        for i, x in zip(diff, xs, strict=True):
            leaf = Tensor._from_array(np.array(x, copy=True), requires_grad=requires_grad)
            args[i] = leaf
            leaves.append(leaf)
        return leaves, _as_tuple(func(*args))

    def forward(xs: Sequence[np.ndarray]) -> list[np.ndarray]:
        from .. import _graph
        from .grad_mode import no_grad
        with no_grad():
            _, outs = call(xs, False)
        _graph.materialize([o._expr for o in outs])
        return [o._expr.value for o in outs]

    def vjp(xs: Sequence[np.ndarray], j: int, cotangent: np.ndarray) -> list:
        from .._tensor import Tensor
        from . import grad
        leaves, outs = call(xs, True)
        out = outs[j]
        if not out.requires_grad:
            return [None] * len(leaves)
        grads = grad(out, leaves, Tensor._from_array(cotangent), allow_unused=True)
        return [None if g is None else g._expr.value for g in grads]

    arrays = [tupled[i].detach().numpy() for i in diff]
    try:
        # The engine would number inputs among those perturbed only; torch's numbering came above.
        return engine.check_jacobians(forward, vjp, arrays, eps=eps, atol=atol, rtol=rtol,
                                      raise_exception=raise_exception, formatter=tensor_repr,
                                      warn_not_double=False)
    except engine.GradcheckError as e:
        raise GradcheckError(e.detail) from None


def gradgradcheck(func: Callable[..., Any], inputs, grad_outputs=None, *, eps: float = 1e-06,
                  atol: float = 1e-05, rtol: float = 0.001, gen_non_contig_grad_outputs: bool = False,
                  raise_exception: bool = True, nondet_tol: float = 0.0, check_undefined_grad: bool = True,
                  check_grad_dtypes: bool = False, check_batched_grad: bool = False,
                  check_fwd_over_rev: bool = False, check_rev_over_rev: bool = True,
                  fast_mode: bool = False, masked: bool = False) -> bool:
    raise NotImplementedError("gradserve: gradgradcheck needs second derivatives, i.e. backward with "
                              "create_graph=True, which is not supported yet")
