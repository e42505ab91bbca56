"""`torch.autograd`: backward, grad, Function, gradcheck and the grad-mode context managers."""

from __future__ import annotations

import warnings
from typing import Sequence

from . import function
from .function import Function
from .grad_mode import (
    enable_grad,
    inference_mode,
    is_grad_enabled,
    is_inference_mode_enabled,
    no_grad,
    set_grad_enabled,
)
from .gradcheck import gradcheck, gradgradcheck  # the functions shadow the submodule, as in torch

__all__ = ["backward", "grad", "Function", "function", "gradcheck", "gradgradcheck", "no_grad",
           "enable_grad", "set_grad_enabled", "inference_mode", "is_grad_enabled",
           "is_inference_mode_enabled", "Variable"]

CREATE_GRAPH_WARNING = (
    "Using backward() with create_graph=True will create a reference cycle between the parameter and "
    "its gradient which can cause a memory leak. We recommend using autograd.grad when creating the "
    "graph to avoid this. If you have to use this function, make sure to reset the .grad fields of "
    "your parameters to None after use to break the cycle and avoid the leak.")


def _as_list(x) -> list:
    if x is None:
        return []
    from .._core import TensorCore
    if isinstance(x, TensorCore):
        return [x]
    return list(x)


def _grads_for(outputs: list, grads) -> list:
    from .._core import TensorCore
    if grads is None:
        return [None] * len(outputs)
    if isinstance(grads, TensorCore):
        grads = [grads]
    grads = list(grads)
    if len(grads) != len(outputs):
        raise RuntimeError(f"got {len(grads)} tensors and {len(outputs)} gradients")
    return grads


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, grad_variables=None,
             inputs=None) -> None:
    """Accumulate d(tensors)/d(leaves) into the leaves' `.grad`: one request to the executor."""
    from .. import _autograd
    if grad_variables is not None:
        grad_tensors = grad_variables
    outputs = _as_list(tensors)
    if not outputs:
        raise RuntimeError("backward() received an empty list of tensors")
    if inputs is not None:
        inputs = _as_list(inputs)
        if not inputs:
            raise RuntimeError("'inputs' argument to backward() cannot be empty.")
    seeds = _autograd.make_seeds(outputs, _grads_for(outputs, grad_tensors))
    if create_graph:
        warnings.warn(CREATE_GRAPH_WARNING, UserWarning, stacklevel=2)
    if retain_graph is None:
        retain_graph = create_graph
    _autograd.execute(outputs, seeds, inputs, accumulate=True, retain_graph=retain_graph,
                      create_graph=create_graph)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, only_inputs=True,
         allow_unused=None, is_grads_batched=False, materialize_grads=False) -> tuple:
    """The gradients of `outputs` with respect to `inputs`, as a tuple; `.grad` is not touched."""
    from .. import _autograd
    from .._tensor import Tensor
    if is_grads_batched:
        raise NotImplementedError("gradserve: autograd.grad(is_grads_batched=True) is not supported")
    if materialize_grads and allow_unused is False:
        raise ValueError("Expected allow_unused to be True or not passed when materialize_grads=True, "
                         "but got: allow_unused=False.")
    if allow_unused is None:
        allow_unused = materialize_grads
    outs = _as_list(outputs)
    ins: Sequence = _as_list(inputs)
    for t in ins:
        if not t.requires_grad:
            raise RuntimeError("One of the differentiated Tensors does not require grad")
    seeds = _autograd.make_seeds(outs, _grads_for(outs, grad_outputs))
    if retain_graph is None:
        retain_graph = create_graph
    got = _autograd.execute(outs, seeds, ins, accumulate=False, retain_graph=retain_graph,
                            create_graph=create_graph)
    result = []
    for i, (t, g) in enumerate(zip(ins, got, strict=True)):
        if g is None:
            if materialize_grads:
                from .._factories import zeros_like
                result.append(zeros_like(t))
                continue
            if not allow_unused:
                raise RuntimeError(f"The differentiated Tensor at index {i} appears to not have been used "
                                   "in the graph. Set allow_unused=True if this is the desired behavior.")
            result.append(None)
        else:
            result.append(Tensor._from_array(g))
    return tuple(result)


def Variable(data, requires_grad: bool = False):  # noqa: N802  (the deprecated torch.autograd.Variable)
    return data.detach().requires_grad_(requires_grad) if requires_grad else data
