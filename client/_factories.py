"""Factories: tensor/as_tensor/from_numpy, zeros/ones/full/empty (+_like), arange, linspace, eye,
rand/randn/randint and manual_seed. Values are made on the client (no request)."""

from __future__ import annotations

import threading
import warnings

import numpy as np

from . import _dtypes
from ._tensor import Tensor
from .autograd.grad_mode import is_inference_mode_enabled

COPY_CONSTRUCT_WARNING = (
    "To copy construct from a tensor, it is recommended to use sourceTensor.detach().clone() or "
    "sourceTensor.detach().clone().requires_grad_(True), rather than torch.tensor(sourceTensor).")

_seed_lock = threading.Lock()
_generator = np.random.default_rng()


def manual_seed(seed: int):
    """Seed the client's random generator (rand, randn, randint, normal_, ...)."""
    global _generator
    with _seed_lock:
        _generator = np.random.default_rng(int(seed))
    return _generator


def seed() -> int:
    """Seed the client's random generator from a nondeterministic source; return that seed."""
    value = int(np.random.SeedSequence().entropy % (1 << 63))
    manual_seed(value)
    return value


def _rng() -> np.random.Generator:
    return _generator


def _leaf(array: np.ndarray, requires_grad: bool) -> Tensor:
    if requires_grad and array.dtype.kind != "f":
        raise RuntimeError("Only Tensors of floating point and complex dtype can require gradients")
    t = Tensor._from_array(array, requires_grad=bool(requires_grad))
    if is_inference_mode_enabled():
        t._inference = True
    return t


def _infer_dtype(data) -> np.dtype:
    """PyTorch's inference for nested Python data: bool < int64 < default float."""
    kinds = set()
    stack = [data]
    while stack:
        x = stack.pop()
        if isinstance(x, (list, tuple)):
            stack.extend(x)
        elif isinstance(x, Tensor):
            kinds.add(x._expr.spec.dtype.kind)
        elif isinstance(x, (bool, np.bool_)):
            kinds.add("b")
        elif isinstance(x, (int, np.integer)):
            kinds.add("i")
        elif isinstance(x, (float, np.floating)):
            kinds.add("f")
        elif isinstance(x, complex):
            raise NotImplementedError("gradserve: complex tensors are not supported")
        else:
            raise TypeError(f"new(): invalid data type '{type(x).__name__}'")
    if "f" in kinds or not kinds:
        return _dtypes.default_float()
    if "i" in kinds or "u" in kinds:
        return np.dtype(np.int64)
    return np.dtype(np.bool_)


def _unwrap(data):
    if isinstance(data, Tensor):
        return data._value()
    if isinstance(data, (list, tuple)):
        return [_unwrap(x) for x in data]
    return data


def tensor(data, *, dtype=None, device=None, requires_grad=False, pin_memory=False) -> Tensor:
    """A new leaf holding a copy of `data` (float data becomes float32, as in PyTorch)."""
    np_dtype = _dtypes.to_numpy(dtype)
    if isinstance(data, Tensor):
        warnings.warn(COPY_CONSTRUCT_WARNING, UserWarning, stacklevel=2)
        array = np.array(data._value(), dtype=np_dtype, copy=True)
    elif isinstance(data, np.ndarray):
        _dtypes.from_numpy_dtype(data.dtype)
        array = np.array(data, dtype=np_dtype, copy=True)
    elif isinstance(data, np.generic):
        array = np.array(data, dtype=np_dtype or data.dtype)
    else:
        array = np.array(_unwrap(data), dtype=np_dtype or _infer_dtype(data))
    if not array.flags.c_contiguous:
        array = array.copy(order="C")
    return _leaf(array, requires_grad)


def legacy_new(dtype, *args) -> Tensor:
    """`torch.Tensor(data)` / `torch.FloatTensor(2, 3)`: data is copied, sizes give zeros."""
    if not args:
        return zeros(0, dtype=dtype)
    if len(args) == 1 and not isinstance(args[0], (int, np.integer)):
        return tensor(args[0], dtype=dtype)
    return zeros(*args, dtype=dtype)


def _legacy_constructor(name: str, dtype):
    def constructor(*args) -> Tensor:
        return legacy_new(dtype, *args)
    constructor.__name__ = constructor.__qualname__ = name
    constructor.__doc__ = f"torch.{name}(data) or torch.{name}(*sizes): a {dtype} tensor."
    return constructor


LEGACY = {name: _legacy_constructor(name, d) for name, d in (
    ("FloatTensor", _dtypes.float32), ("DoubleTensor", _dtypes.float64), ("HalfTensor", _dtypes.float16),
    ("LongTensor", _dtypes.int64), ("IntTensor", _dtypes.int32), ("ShortTensor", _dtypes.int16),
    ("CharTensor", _dtypes.int8), ("ByteTensor", _dtypes.uint8), ("BoolTensor", _dtypes.bool_))}


def as_tensor(data, dtype=None, device=None) -> Tensor:
    if isinstance(data, Tensor):
        return data if dtype is None else data.to(dtype)
    if isinstance(data, np.ndarray) and (dtype is None or _dtypes.to_numpy(dtype) == data.dtype):
        return from_numpy(data)
    return tensor(data, dtype=dtype)


def from_numpy(array: np.ndarray) -> Tensor:
    """Shares memory with `array` (writes to either are seen by the other) and keeps its dtype."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(array).__name__})")
    _dtypes.from_numpy_dtype(array.dtype)
    return _leaf(array, False)


def _size_args(size) -> tuple[int, ...]:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = size[0]
    return tuple(int(s) for s in size)


def _float_dtype(dtype) -> np.dtype:
    return _dtypes.to_numpy(dtype) if dtype is not None else _dtypes.default_float()


def zeros(*size, dtype=None, device=None, requires_grad=False, out=None) -> Tensor:
    return _leaf(np.zeros(_size_args(size), _float_dtype(dtype)), requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False, out=None) -> Tensor:
    return _leaf(np.ones(_size_args(size), _float_dtype(dtype)), requires_grad)


def empty(*size, dtype=None, device=None, requires_grad=False, out=None, memory_format=None) -> Tensor:
    return zeros(*size, dtype=dtype, requires_grad=requires_grad)


def full(size, fill_value, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    if dtype is None:
        dtype = _infer_dtype(fill_value)
    return _leaf(np.full(_size_args((size,)), fill_value, _dtypes.to_numpy(dtype)), requires_grad)


def _like(fn, t: Tensor, dtype, requires_grad, *args) -> Tensor:
    return fn(tuple(t.shape), *args, dtype=dtype or t.dtype, requires_grad=requires_grad)


def zeros_like(input, *, dtype=None, device=None, requires_grad=False, memory_format=None) -> Tensor:
    return _like(zeros, input, dtype, requires_grad)


def ones_like(input, *, dtype=None, device=None, requires_grad=False, memory_format=None) -> Tensor:
    return _like(ones, input, dtype, requires_grad)


def empty_like(input, *, dtype=None, device=None, requires_grad=False, memory_format=None) -> Tensor:
    return _like(zeros, input, dtype, requires_grad)


def full_like(input, fill_value, *, dtype=None, device=None, requires_grad=False,
              memory_format=None) -> Tensor:
    return full(tuple(input.shape), fill_value, dtype=dtype or input.dtype, requires_grad=requires_grad)


def arange(start, end=None, step=1, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    if end is None:
        start, end = 0, start
    if dtype is None:
        dtype = _infer_dtype([start, end, step])
    np_dtype = _dtypes.to_numpy(dtype)
    if step == 0:
        raise RuntimeError("step must be nonzero")
    n = max(0, int(np.ceil((end - start) / step)))
    return _leaf((start + step * np.arange(n, dtype=np.float64)).astype(np_dtype), requires_grad)


def linspace(start, end, steps, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _leaf(np.linspace(start, end, int(steps), dtype=np.float64).astype(_float_dtype(dtype)),
                 requires_grad)


def eye(n, m=None, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _leaf(np.eye(n, m, dtype=_float_dtype(dtype)), requires_grad)


def rand(*size, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    np_dtype = _float_dtype(dtype)
    return _leaf(_rng().random(_size_args(size)).astype(np_dtype), requires_grad)


def randn(*size, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    np_dtype = _float_dtype(dtype)
    return _leaf(_rng().standard_normal(_size_args(size)).astype(np_dtype), requires_grad)


def randint(low, high=None, size=None, *, generator=None, dtype=None, device=None,
            requires_grad=False) -> Tensor:
    if size is None:
        low, high, size = 0, low, high
    np_dtype = _dtypes.to_numpy(dtype) if dtype is not None else np.dtype(np.int64)
    return _leaf(_rng().integers(low, high, tuple(size)).astype(np_dtype), requires_grad)


def rand_like(input, *, dtype=None, requires_grad=False) -> Tensor:
    return rand(tuple(input.shape), dtype=dtype or input.dtype, requires_grad=requires_grad)


def randn_like(input, *, dtype=None, requires_grad=False) -> Tensor:
    return randn(tuple(input.shape), dtype=dtype or input.dtype, requires_grad=requires_grad)


def randperm(n, *, dtype=None, requires_grad=False) -> Tensor:
    return _leaf(_rng().permutation(int(n)).astype(_dtypes.to_numpy(dtype) or np.int64), requires_grad)


def normal(mean, std, size, *, generator=None, dtype=None, requires_grad=False) -> Tensor:
    return _leaf(_rng().normal(mean, std, _size_args((size,))).astype(_float_dtype(dtype)), requires_grad)
