"""`torch.<op>(tensor, ...)` functions: the Tensor methods as free functions, plus cat/stack/where."""

from __future__ import annotations

from ._core import apply
from ._ops import UNARY, scalar
from ._ops import is_tensor as _is_tensor
from ._tensor import Tensor

# torch.f(t, *args, **kwargs) is t.f(*args, **kwargs) for these.
METHODS = [
    "add", "sub", "subtract", "mul", "multiply", "div", "divide", "true_divide", "rsub", "neg", "negative",
    "square", "round", "clamp", "clip", "clamp_min", "clamp_max", "maximum", "minimum",
    "sum", "mean", "prod", "var", "std", "amax", "amin", "argmax", "argmin", "logsumexp", "norm",
    "all", "any", "matmul", "mm", "bmm", "mv", "dot", "outer", "ger", "reshape", "flatten", "unflatten",
    "squeeze", "unsqueeze", "permute", "transpose", "swapaxes", "swapdims", "t", "movedim", "moveaxis",
    "clone", "flip", "split", "chunk", "unbind", "narrow", "gather", "index_select", "masked_fill",
    "relu", "eq", "ne", "lt", "le", "gt", "ge", "less", "less_equal", "greater", "greater_equal",
    "not_equal", "logical_and", "logical_or", "logical_xor", "logical_not", "isnan", "isinf",
    "isfinite", "numel", "detach", "broadcast_to", "absolute", "fix", "arcsin", "arccos", "arctan",
    "remainder", "fmod", "floor_divide", "select",
] + list(UNARY)


def _method(name: str):
    def fn(input, *args, **kwargs):
        return getattr(input, name)(*args, **kwargs)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"torch.{name}(input, ...): Tensor.{name}."
    return fn


FUNCTIONS = {name: _method(name) for name in METHODS}


def pow(input, exponent):
    if not _is_tensor(input):
        return exponent.__rpow__(input)
    return input.pow(exponent)


def remainder(input, other):
    """torch.remainder also takes a Python number as the dividend (not differentiable then)."""
    if not _is_tensor(input):
        return other.__rmod__(input)
    return input.remainder(other)


def max(input, dim=None, keepdim=False):
    return input.max(dim, keepdim)


def min(input, dim=None, keepdim=False):
    return input.min(dim, keepdim)


def dropout(input, p, train):
    """torch.dropout(input, p, train): F.dropout with positional `train`."""
    from .nn.functional import dropout as f_dropout
    return f_dropout(input, p, train)


def softmax(input, dim, dtype=None):
    return input.softmax(dim, dtype=dtype)


def log_softmax(input, dim, dtype=None):
    return input.log_softmax(dim, dtype=dtype)


def cat(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("torch.cat(): expected a non-empty list of Tensors")
    return apply("cat", tensors, {"dim": int(dim)}, "CatBackward0")


concat = concatenate = cat


def stack(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    return apply("stack", tensors, {"dim": int(dim)}, "StackBackward0")


def where(condition, input=None, other=None):
    if input is None and other is None:
        raise NotImplementedError("gradserve: torch.where(condition) (nonzero) is not supported yet")
    tensors = [condition]
    attrs: dict = {}
    for key, x in (("input", input), ("other", other)):
        if _is_tensor(x):
            tensors.append(x)
        else:
            attrs[key] = scalar(x)
    return apply("where", tensors, attrs, "WhereBackward0")


def is_tensor(obj) -> bool:
    return isinstance(obj, Tensor)


def is_floating_point(input) -> bool:
    return input.is_floating_point()


def einsum(*args):
    raise NotImplementedError("gradserve: torch.einsum is not supported yet")
