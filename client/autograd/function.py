"""`torch.autograd.Function`: custom forward/backward pairs written in Python, run on the client.

Nothing of a Function travels to the service as code. `apply` runs `forward` here with grad mode
off, so the ops it records are ordinary graph nodes that compute the outputs but are not part of
the outer autograd graph; the outputs get one grad_fn, an instance of `<Name>Backward` (which is
also the `ctx` the user saw). During backward that node is a cut (see `_autograd.execute`): the
gradient reaching its outputs comes back from the executor, `backward` runs here recording
ordinary ops on it, and a follow-up request carries the result on from the Function's inputs.
"""

from __future__ import annotations

import functools
import inspect
import warnings
import weakref
from typing import Any

import numpy as np

from .. import _graph
from .._autograd import ERR_BACKWARD_TWICE, Node, SavedRef
from .grad_mode import enable_grad, is_grad_enabled, no_grad

__all__ = ["BackwardCFunction", "Function", "FunctionCtx", "InplaceFunction", "once_differentiable"]

LEGACY_ERROR = (
    "Legacy autograd function with non-static forward method is deprecated. Please use new-style "
    "autograd function with static forward method. (Example: "
    "https://pytorch.org/docs/stable/autograd.html#torch.autograd.Function)")
DIRTY_LEAF_ERROR = "a leaf Variable that requires grad has been used in an in-place operation."
DIRTY_NOT_RETURNED_ERROR = (
    "Some elements marked as dirty during the forward method were not returned as output. The "
    "inputs that are modified inplace must all be outputs of the Function.")


class FunctionCtx:
    """What `forward` (or `setup_context`) may call on `ctx`; arbitrary attributes are allowed."""

    def save_for_backward(self, *tensors) -> None:
        """Keep `tensors` (or None) for backward; checked for in-place changes when unpacked."""
        self._to_save = tensors

    def mark_dirty(self, *tensors) -> None:
        """Declare inputs that `forward` modified in place (they must be returned as outputs)."""
        self._dirty = tensors

    def mark_non_differentiable(self, *tensors) -> None:
        """Outputs that get no grad_fn; backward still receives (zero) gradients for them."""
        self._non_differentiable = tensors

    def set_materialize_grads(self, value: bool) -> None:
        """With False, backward receives None instead of zeros for outputs that got no gradient."""
        self._materialize_grads = bool(value)

    def save_for_forward(self, *tensors) -> None:
        raise NotImplementedError("gradserve: forward-mode AD (save_for_forward) is not supported")


class BackwardCFunction(Node, FunctionCtx):
    """The grad_fn of a Function's outputs, and the `ctx` its forward and backward receive."""

    _is_function = True
    _forward_cls: type = None  # type: ignore[assignment]

    def _start(self, args: tuple) -> None:
        from .._core import TensorCore
        tensors = [a for a in args if isinstance(a, TensorCore)]
        Node.__init__(self, None, {}, (), (), None)
        self.needs_input_grad = tuple(isinstance(a, TensorCore) and a.requires_grad for a in args)
        self._materialize_grads = True
        self._is_tensor_arg = tuple(isinstance(a, TensorCore) for a in args)
        self._to_save: tuple = ()
        self._dirty: tuple = ()
        self._non_differentiable: tuple = ()
        self._saved: tuple | None = None      # set once forward has returned
        self._saved_refs: tuple = ()
        self._outputs: tuple = ()             # per output: its Expr if it has this grad_fn
        self._out_specs: tuple = ()           # per output: its spec if it is a tensor
        self._out_refs: tuple = ()            # per output: weakref to the tensor
        # The inputs as they are before forward runs (mark_dirty changes them in place).
        self._inputs = tuple(t._expr for t in tensors)
        self._edges = tuple(t._edge() for t in tensors)

    # ----- what backward and users read -------------------------------------------------------

    @property
    def saved_tensors(self) -> tuple:
        if self._saved is None:           # forward has not returned yet, or backward freed them
            if self._freed:
                raise RuntimeError(ERR_BACKWARD_TWICE)
            return ()
        for ref in self._saved_refs:
            if ref is not None:
                ref.check()
        return self._saved

    @property
    def saved_variables(self) -> tuple:
        warnings.warn("'saved_variables' is deprecated; use 'saved_tensors'", DeprecationWarning,
                      stacklevel=2)
        return self.saved_tensors

    def __repr__(self) -> str:
        return f"<torch.autograd.function.{type(self).__name__} object at {hex(id(self))}>"

    __str__ = __repr__

    # ----- hooks for _autograd ----------------------------------------------------------------

    def _free(self) -> None:
        self._freed = True
        if self._saved:
            self._saved = None
            self._saved_refs = ()

    def _output_index(self, expr) -> int:
        for k, x in enumerate(self._outputs):
            if x is expr:
                return k
        # The tensor's value was replaced without new history (`.data = ...`): its position is
        # lost, so the gradient goes to the first output, which is exact for one output.
        return next(k for k, x in enumerate(self._outputs) if x is not None)

    def _output_tensor(self, k: int):
        ref = self._out_refs[k]
        t = ref() if ref is not None else None
        return t if t is not None and t._grad_fn is self else None

    def _output_tensors(self) -> tuple:
        return tuple(t for k in range(len(self._out_refs)) if (t := self._output_tensor(k)) is not None)

    def _run_backward(self, grads: list[np.ndarray | None]) -> list[np.ndarray | None]:
        """Call the user's backward on the gradients at the outputs; one array (or None) per
        tensor input, checked, summed to the input's shape and cast to its dtype as torch does."""
        from gradserve.engine import sum_to

        from .._tensor import Tensor
        cls = self._forward_cls
        backward_fn, vjp_fn = cls.backward, cls.vjp
        if backward_fn is not Function.backward and vjp_fn is not Function.vjp:
            raise RuntimeError("Implementing both 'backward' and 'vjp' for a custom Function is not "
                               "allowed. You should only implement one of them.")
        user_fn = vjp_fn if vjp_fn is not Function.vjp else backward_fn
        grad_outputs = []
        for k, spec in enumerate(self._out_specs):
            if spec is None:
                grad_outputs.append(None)
                continue
            g = grads[k] if k < len(grads) else None
            if g is None and (self._materialize_grads or self._outputs[k] is None):
                g = np.zeros(spec.shape, spec.dtype)
            grad_outputs.append(None if g is None else Tensor._from_array(g))
        with no_grad():
            result = user_fn(self, *grad_outputs)
        result = _check_grad_count(self.name(), result, self._is_tensor_arg)

        tensor_grads = []
        for j, (g, edge, x) in enumerate(zip(result, self._edges, self._inputs, strict=True)):
            if g is None or edge is None:
                tensor_grads.append(None)
                continue
            shape = tuple(x.spec.shape)
            if tuple(g.shape) != shape and not _expandable(shape, tuple(g.shape)):
                raise RuntimeError(f"Function {self.name()} returned an invalid gradient at index {j} - "
                                   f"got {list(g.shape)} but expected shape compatible with "
                                   f"{list(shape)}")
            tensor_grads.append(g)
        _graph.materialize([g._expr for g in tensor_grads if g is not None])
        arrays: list[np.ndarray | None] = []
        for g, x in zip(tensor_grads, self._inputs, strict=True):
            if g is None:
                arrays.append(None)
                continue
            a = np.asarray(g._expr.value)
            if a.shape != x.spec.shape:
                a = sum_to(a, x.spec.shape)
            arrays.append(a.astype(x.spec.dtype, copy=False))
        return arrays


def _check_grad_count(name: str, result, is_tensor_arg: tuple) -> list:
    """PyNode::apply's checks on what backward returned: one gradient per forward argument
    (extra trailing Nones allowed), None for non-tensor arguments. Returns the tensor ones."""
    from .._core import TensorCore
    if not isinstance(result, tuple):
        result = (result,)
    n = len(is_tensor_arg)
    if len(result) > n and all(r is None for r in result[n:]):
        result = result[:n]
    if len(result) != n:
        raise RuntimeError(f"function {name} returned an incorrect number of gradients (expected {n}, "
                           f"got {len(result)})")
    grads = []
    for i, (g, is_tensor) in enumerate(zip(result, is_tensor_arg, strict=True)):
        if not is_tensor:
            if g is not None:
                raise RuntimeError(f"function {name} returned a gradient different than None at "
                                   f"position {i + 1}, but the corresponding forward input was not a "
                                   "Variable")
            continue
        if g is not None and not isinstance(g, TensorCore):
            raise RuntimeError(f"expected Variable or None (got {type(g).__name__})")
        grads.append(g)
    return grads


def _expandable(shape: tuple, to: tuple) -> bool:
    """Can a tensor of `shape` be expanded to `to` (then a gradient of shape `to` sums back)?"""
    if len(shape) > len(to):
        return False
    return all(s == t or s == 1 for s, t in zip(reversed(shape), reversed(to), strict=False))


class Function:
    """Base class for custom autograd operations (`forward`/`backward` static methods).

    Use `MyFn.apply(*args)`. Both `forward(ctx, *args)` and the 2.0 style `forward(*args)` plus
    `setup_context(ctx, inputs, output)` are supported.
    """

    _backward_cls: type = BackwardCFunction

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls._backward_cls = type(f"{cls.__name__}Backward", (BackwardCFunction,),
                                 {"_forward_cls": cls, "__module__": __name__})

    def __init__(self, *args, **kwargs) -> None:
        warnings.warn(f"{self.__class__} should not be instantiated. Methods on autograd functions are "
                      "all static, so you should invoke them on the class itself. Instantiating an "
                      "autograd function will raise an error in a future version of PyTorch.",
                      DeprecationWarning, stacklevel=2)

    def __call__(self, *args, **kwargs):
        raise RuntimeError(LEGACY_ERROR)

    @staticmethod
    def forward(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("You must implement the forward function for custom autograd.Function.")

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Any) -> Any:
        raise NotImplementedError("setup_context is not implemented.")

    @staticmethod
    def backward(ctx: Any, *grad_outputs: Any) -> Any:
        raise NotImplementedError("You must implement either the backward or vjp method for your custom "
                                  "autograd.Function to use it with backward mode AD.")

    vjp = backward

    @staticmethod
    def jvp(ctx: Any, *grad_inputs: Any) -> Any:
        raise NotImplementedError("gradserve: forward-mode AD (jvp) is not supported")

    @classmethod
    def apply(cls, *args, **kwargs):
        new_style = cls.setup_context is not Function.setup_context
        if new_style:
            args = _bind_default_args(cls.forward, args, kwargs)
        elif kwargs:
            raise TypeError(f"forward() got an unexpected keyword argument '{next(iter(kwargs))}'")
        ctx = cls._backward_cls.__new__(cls._backward_cls)
        ctx._start(args)
        executable = is_grad_enabled() and any(ctx.needs_input_grad)
        with no_grad():
            if new_style:
                output = cls.forward(*args)
                cls.setup_context(ctx, args, output)
            else:
                output = cls.forward(ctx, *args)
        if not executable:
            ctx._saved = ()
            return output
        return _wrap_outputs(ctx, args, output)


def _bind_default_args(func, args: tuple, kwargs: dict) -> tuple:
    signature = inspect.signature(func)
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    return tuple(bound.args)


def _wrap_outputs(ctx: BackwardCFunction, args: tuple, output):
    """Give the outputs their grad_fn (`ctx`) and keep what backward needs (torch's
    `_wrap_outputs` and `_save_variables`)."""
    from .._core import TensorCore
    from .._inplace import VIEW_OF_LEAF_INPLACE_ERROR, commit, root_of
    from .._tensor import Tensor
    is_tuple = isinstance(output, tuple)
    outputs = output if is_tuple else (output,)
    inputs = [a for a in args if isinstance(a, TensorCore)]
    dirty = {id(t) for t in ctx._dirty}
    non_diff = {id(t) for t in ctx._non_differentiable}
    for t in ctx._dirty:
        if not any(t is o for o in outputs):
            raise RuntimeError(DIRTY_NOT_RETURNED_ERROR)

    wrapped, exprs, specs, refs = [], [], [], []
    for o in outputs:
        if not isinstance(o, TensorCore):
            wrapped.append(o)
            exprs.append(None)
            specs.append(None)
            refs.append(None)
            continue
        differentiable = o.is_floating_point() and id(o) not in non_diff
        if id(o) in dirty and o._view is not None and differentiable:
            # Modified through a view: the base's history becomes CopySlices over this node and
            # the view's grad_fn is rebuilt from the base's, as for any in-place op on a view.
            if root_of(o).is_leaf and root_of(o).requires_grad:
                raise RuntimeError(VIEW_OF_LEAF_INPLACE_ERROR)
            result = Tensor._from_expr(o._expr)
            result._grad_fn = ctx
            exprs.append(result._expr)
            refs.append(weakref.ref(result))
            with enable_grad():
                commit(o, result)
            specs.append(o._expr.spec)
            wrapped.append(o)
            continue
        if id(o) in dirty:
            if o._grad_fn is None and o._requires_grad:
                raise RuntimeError(DIRTY_LEAF_ERROR)
            o._vc.value += 1
        elif any(o is t for t in inputs):
            o = _alias(o)                 # an input returned unchanged: a view of it, as in torch
        if differentiable:
            o._grad_fn = ctx
            exprs.append(o._expr)
            refs.append(weakref.ref(o))
        else:
            exprs.append(None)
            refs.append(None)
        specs.append(o._expr.spec)
        wrapped.append(o)
    ctx._outputs, ctx._out_specs, ctx._out_refs = tuple(exprs), tuple(specs), tuple(refs)

    saved, saved_refs = [], []
    for i, t in enumerate(ctx._to_save):
        if t is None:
            saved.append(None)
            saved_refs.append(None)
            continue
        if not isinstance(t, TensorCore):
            raise TypeError(f"save_for_backward can only save variables, but argument {i} is of type "
                            f"{type(t).__name__}")
        is_output = any(t is o for o in wrapped)
        saved.append(t)
        saved_refs.append(SavedRef(t, "output", ctx.name()) if is_output else SavedRef(t, "input"))
    ctx._saved, ctx._saved_refs = tuple(saved), tuple(saved_refs)
    ctx._to_save = ()
    return tuple(wrapped) if is_tuple else wrapped[0]


def _alias(t):
    from .._inplace import make_view
    with no_grad():
        return make_view(t, "reshape", {"shape": tuple(t.shape)}, None)


class InplaceFunction(Function):
    """A Function with an `inplace` flag (torch.autograd.function.InplaceFunction)."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace


def once_differentiable(fn):
    """Marks a backward as not differentiable twice; gradserve runs every backward without
    recording, so this only keeps the signature."""
    @functools.wraps(fn)
    def wrapper(ctx, *args):
        with no_grad():
            return fn(ctx, *args)
    return wrapper

