"""The public `gradserve` namespace (what `import gradserve as torch` offers), resolved lazily by
`gradserve.__getattr__` so that importing the package alone loads neither NumPy nor gRPC."""

from __future__ import annotations

from . import _dtypes, _factories, _functions, autograd, nn  # noqa: F401
from ._core import device
from ._dtypes import dtype, get_default_dtype, set_default_dtype
from ._executor import InProcessExecutor, RemoteExecutor, ServiceError, connect, disconnect
from ._executor import current as executor
from ._size import Size
from ._tensor import Tensor
from .autograd.grad_mode import (
    enable_grad,
    inference_mode,
    is_grad_enabled,
    is_inference_mode_enabled,
    no_grad,
    set_grad_enabled,
)

# dtypes under torch's names (`float` and `bool` shadow builtins only inside this namespace).
DTYPES = dict(_dtypes.ALIASES)

FACTORIES = {name: getattr(_factories, name) for name in (
    "tensor", "as_tensor", "from_numpy", "zeros", "ones", "empty", "full", "zeros_like", "ones_like",
    "empty_like", "full_like", "arange", "linspace", "eye", "rand", "randn", "randint", "rand_like",
    "randn_like", "randperm", "normal", "manual_seed", "seed")}

FACTORIES.update(_factories.LEGACY)

FUNCTIONS = dict(_functions.FUNCTIONS)
FUNCTIONS.update({name: getattr(_functions, name) for name in (
    "pow", "max", "min", "softmax", "log_softmax", "cat", "concat", "concatenate", "stack", "where",
    "is_tensor", "is_floating_point", "einsum", "dropout", "remainder")})

OTHER = {
    "Tensor": Tensor, "Size": Size, "dtype": dtype, "device": device,
    "get_default_dtype": get_default_dtype, "set_default_dtype": set_default_dtype,
    "no_grad": no_grad, "enable_grad": enable_grad, "set_grad_enabled": set_grad_enabled,
    "inference_mode": inference_mode, "is_grad_enabled": is_grad_enabled,
    "is_inference_mode_enabled": is_inference_mode_enabled,
    "connect": connect, "disconnect": disconnect, "executor": executor, "ServiceError": ServiceError,
    "InProcessExecutor": InProcessExecutor, "RemoteExecutor": RemoteExecutor,
    "autograd": autograd, "nn": nn,
}

PUBLIC: dict[str, object] = {**DTYPES, **FACTORIES, **FUNCTIONS, **OTHER}
